//! A 100 MB line is quarantined without being held: the heap stays within
//! a few record limits (1 MiB each) while it is read. Its own test binary,
//! so the counting allocator sees no other test's allocations.

mod common;
use common::*;
use hr_core::{load_input_dir, Mapping, Reason};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The system allocator, counting live bytes and their peak.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged to the system allocator.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[test]
fn a_100_mb_line_is_quarantined_while_the_heap_stays_under_16_mib() {
    // Streamed from a generator: the test itself never holds 100 MB.
    let dir = tempfile::tempdir().unwrap();
    Input::default().write(dir.path());
    let path = dir.path().join("company_b/employees.jsonl");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        writeln!(f, "{}", b_line(1, 10, None, None, true, "2026-01-01T00:00:00Z")).unwrap();
        f.write_all(b"{\"employeeId\": 2, \"firstName\": \"").unwrap();
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..100 {
            f.write_all(&chunk).unwrap();
        }
        f.write_all(b"\"}\n").unwrap();
        writeln!(f, "{}", b_line(3, 10, None, None, true, "2026-01-01T00:00:00Z")).unwrap();
    }
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let data = load_input_dir(dir.path(), &Mapping::default()).unwrap();
    let grew = PEAK.load(Ordering::Relaxed) - before;

    assert!(grew < 16 << 20, "reading a 100 MB line grew the heap by {} MiB", grew >> 20);
    assert_eq!(data.employee_count(), 3, "A-1, B-1 and B-3");
    assert_eq!(data.quarantined().len(), 1);
    let q = &data.quarantined()[0];
    assert_eq!((q.file.as_str(), q.line, q.reason), ("company_b/employees.jsonl", 2, Reason::MalformedRow));
    assert!(q.detail.contains("limit"), "{}", q.detail);
}
