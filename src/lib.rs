pub use hr_core;
