//! Records as SCIM resources, and back: employees as Users with the
//! enterprise extension, org units as Groups.
//!
//! | record field | SCIM attribute |
//! |---|---|
//! | `id` | `externalId`, enterprise `employeeNumber` |
//! | `email` (else `id`) | `userName` |
//! | `email` | `emails[type eq "work"].value` |
//! | `name` | `displayName`, `name.formatted` |
//! | `name_en` | `name.givenName`/`familyName` are not set: `name_en` is one string |
//! | `phone` (where the field scope allows) | `phoneNumbers[type eq "work"].value` |
//! | `status` | `active` (`false` when terminated, and before the first day: `pre_hire`) |
//! | `company` | enterprise `organization` |
//! | `org_unit` | enterprise `department`, and membership of the unit's Group |
//! | `manager` | enterprise `manager.value` (the manager's SCIM id) |
//! | org unit `id`, `name` | Group `externalId`, `displayName` |

use hr_core::{Employee, EmployeeStatus, OrgUnit};
use serde_json::{json, Map, Value};

pub(crate) const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub(crate) const ENTERPRISE_SCHEMA: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub(crate) const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub(crate) const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// The User for `employee`; `manager` is the manager's SCIM id, when known.
pub(crate) fn user_of(employee: &Employee, manager: Option<&str>) -> Value {
    let mut enterprise = json!({
        "employeeNumber": employee.id.as_str(),
        "organization": format!("{:?}", employee.company),
        "department": employee.org_unit.as_str(),
    });
    if let Some(id) = manager {
        enterprise["manager"] = json!({ "value": id });
    }
    let mut user = json!({
        "schemas": [USER_SCHEMA, ENTERPRISE_SCHEMA],
        "externalId": employee.id.as_str(),
        "userName": employee.email.as_deref().unwrap_or(employee.id.as_str()),
        "displayName": employee.name.as_str(),
        "name": { "formatted": employee.name.as_str() },
        "active": matches!(employee.status, EmployeeStatus::Active | EmployeeStatus::OnLeave),
        ENTERPRISE_SCHEMA: enterprise,
    });
    if let Some(email) = &employee.email {
        user["emails"] = json!([{ "value": email.as_str(), "type": "work", "primary": true }]);
    }
    if let Some(phone) = &employee.phone {
        user["phoneNumbers"] = json!([{ "value": phone.expose().as_str(), "type": "work" }]);
    }
    user
}

/// The Group for `unit` (members are added as their Users are written).
pub(crate) fn group_of(unit: &OrgUnit) -> Value {
    json!({ "schemas": [GROUP_SCHEMA], "externalId": unit.id.as_str(), "displayName": unit.name.as_str() })
}

/// The attributes of a User this transport writes, as one flat object: what
/// it sent, or what a directory holds, compared attribute by attribute
/// (whatever else the directory adds, `meta`, `groups`, `$ref`s, is not
/// ours to compare).
pub(crate) fn owned_user(user: &Value) -> Value {
    let enterprise = &user[ENTERPRISE_SCHEMA];
    let first = |list: &Value| list.as_array().and_then(|l| l.first()).map(|v| v["value"].clone()).unwrap_or(Value::Null);
    let mut owned = Map::new();
    for (name, value) in [
        ("externalId", user["externalId"].clone()),
        ("userName", user["userName"].clone()),
        ("displayName", user["displayName"].clone()),
        ("name.formatted", user["name"]["formatted"].clone()),
        ("active", user["active"].clone()),
        ("emails", first(&user["emails"])),
        ("phoneNumbers", first(&user["phoneNumbers"])),
        ("employeeNumber", enterprise["employeeNumber"].clone()),
        ("organization", enterprise["organization"].clone()),
        ("department", enterprise["department"].clone()),
        ("manager", enterprise["manager"]["value"].clone()),
    ] {
        if !value.is_null() {
            owned.insert(name.to_string(), value);
        }
    }
    Value::Object(owned)
}

/// [`owned_user`] for Groups.
pub(crate) fn owned_group(group: &Value) -> Value {
    let mut owned = Map::new();
    for name in ["externalId", "displayName"] {
        if !group[name].is_null() {
            owned.insert(name.to_string(), group[name].clone());
        }
    }
    Value::Object(owned)
}

/// The PATCH operations that turn a User holding `was` (as [`owned_user`]
/// sees it) into `user`: one `replace` of the attributes that changed, and a
/// `remove` for each that went away. Empty when nothing changed.
pub(crate) fn user_patch(was: &Value, user: &Value) -> Vec<Value> {
    let now = owned_user(user);
    let changed = |name: &str| was.get(name) != now.get(name);
    let mut replace = Map::new();
    let mut enterprise = Map::new();
    let mut ops = vec![];
    for (name, attribute) in [
        ("externalId", "externalId"),
        ("userName", "userName"),
        ("displayName", "displayName"),
        ("name.formatted", "name"),
        ("active", "active"),
        ("emails", "emails"),
        ("phoneNumbers", "phoneNumbers"),
    ] {
        if !changed(name) {
            continue;
        }
        match user.get(attribute) {
            Some(value) => {
                replace.insert(attribute.to_string(), value.clone());
            }
            None => ops.push(json!({ "op": "remove", "path": attribute })),
        }
    }
    for name in ["employeeNumber", "organization", "department", "manager"] {
        if !changed(name) {
            continue;
        }
        match user[ENTERPRISE_SCHEMA].get(name) {
            Some(value) => {
                enterprise.insert(name.to_string(), value.clone());
            }
            None => ops.push(json!({ "op": "remove", "path": format!("{ENTERPRISE_SCHEMA}:{name}") })),
        }
    }
    if !enterprise.is_empty() {
        replace.insert(ENTERPRISE_SCHEMA.to_string(), Value::Object(enterprise));
    }
    if !replace.is_empty() {
        ops.insert(0, json!({ "op": "replace", "value": replace }));
    }
    ops
}

/// The PATCH operations that turn a Group holding `was` into `group`.
pub(crate) fn group_patch(was: &Value, group: &Value) -> Vec<Value> {
    let now = owned_group(group);
    let replace: Map<String, Value> =
        ["externalId", "displayName"].iter().filter(|n| was.get(**n) != now.get(**n)).map(|n| (n.to_string(), group[*n].clone())).collect();
    if replace.is_empty() {
        vec![]
    } else {
        vec![json!({ "op": "replace", "value": replace })]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hr_core::{Company, Sensitive};

    fn employee() -> Employee {
        Employee {
            id: "A-1001".into(),
            source_ids: vec!["A-1001".into()],
            company: Company::A,
            name: "김민준".into(),
            name_en: Some("Minjun Kim".into()),
            email: Some("minjun.kim@a.example".into()),
            phone: Some(Sensitive::new("010-1234-5678".into())),
            birth_date: None,
            org_unit: "A-D1".into(),
            grade: "staff".into(),
            status: EmployeeStatus::Active,
            hire_date: chrono::NaiveDate::from_ymd_opt(2020, 1, 2).unwrap(),
            termination_date: None,
            manager: Some("A-1000".into()),
            updated_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn an_employee_is_a_user_with_the_enterprise_extension() {
        let user = user_of(&employee(), Some("scim-7"));
        assert_eq!(user["externalId"], "A-1001");
        assert_eq!(user["userName"], "minjun.kim@a.example");
        assert_eq!(user["active"], true);
        assert_eq!(user["emails"][0]["value"], "minjun.kim@a.example");
        assert_eq!(user["phoneNumbers"][0]["value"], "010-1234-5678");
        assert_eq!(user[ENTERPRISE_SCHEMA]["manager"]["value"], "scim-7");
        assert_eq!(user[ENTERPRISE_SCHEMA]["department"], "A-D1");
        assert_eq!(user[ENTERPRISE_SCHEMA]["organization"], "A");
        let leaver = Employee { status: EmployeeStatus::Terminated, email: None, phone: None, ..employee() };
        let user = user_of(&leaver, None);
        assert_eq!((user["active"].clone(), user["userName"].clone()), (json!(false), json!("A-1001")));
        assert!(user.get("emails").is_none() && user[ENTERPRISE_SCHEMA].get("manager").is_none());
        let before_the_first_day = Employee { status: EmployeeStatus::PreHire, ..employee() };
        assert_eq!(user_of(&before_the_first_day, None)["active"], json!(false), "an account prepared ahead is not active yet");
    }

    #[test]
    fn a_patch_replaces_only_what_changed_and_removes_what_went_away() {
        let before = user_of(&employee(), Some("scim-7"));
        assert!(user_patch(&owned_user(&before), &before).is_empty(), "nothing changed, nothing sent");
        let moved = user_of(&Employee { org_unit: "A-D2".into(), phone: None, ..employee() }, Some("scim-7"));
        let ops = user_patch(&owned_user(&before), &moved);
        assert_eq!(ops.len(), 2, "{ops:?}");
        assert_eq!(ops[0]["value"], json!({ ENTERPRISE_SCHEMA: { "department": "A-D2" } }));
        assert_eq!(ops[1], json!({ "op": "remove", "path": "phoneNumbers" }));
    }

    #[test]
    fn what_a_directory_adds_is_not_compared() {
        let mut held = user_of(&employee(), Some("scim-7"));
        held["meta"] = json!({ "version": "W/\"1\"" });
        held["id"] = json!("scim-8");
        held["emails"][0]["display"] = json!("work mail");
        held[ENTERPRISE_SCHEMA]["manager"]["$ref"] = json!("https://directory.example/Users/scim-7");
        assert_eq!(owned_user(&held), owned_user(&user_of(&employee(), Some("scim-7"))));
        held["displayName"] = json!("edited by hand");
        assert_ne!(owned_user(&held), owned_user(&user_of(&employee(), Some("scim-7"))));
    }
}
