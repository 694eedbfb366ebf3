//! Built with `cargo build -p nostd-check --target wasm32-unknown-unknown`: if anything in
//! diskscope-core's dependency graph links std, this fails with E0152 (duplicate panic_impl).
#![no_std]

extern crate alloc;

use alloc::sync::Arc;
use diskscope_core::io::MemFile;

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    core::arch::wasm32::unreachable()
}

/// A bump allocator over wasm memory pages: enough for a link check, never shipped.
struct Pages;
static mut NEXT: usize = 0;
static mut END: usize = 0;

unsafe impl core::alloc::GlobalAlloc for Pages {
    unsafe fn alloc(&self, l: core::alloc::Layout) -> *mut u8 {
        let start = (NEXT + l.align() - 1) & !(l.align() - 1);
        if start + l.size() > END {
            let pages = (l.size() + l.align()).div_ceil(65536);
            let base = core::arch::wasm32::memory_grow(0, pages);
            if base == usize::MAX {
                return core::ptr::null_mut();
            }
            NEXT = base * 65536;
            END = NEXT + pages * 65536;
            return self.alloc(l);
        }
        NEXT = start + l.size();
        start as *mut u8
    }
    unsafe fn dealloc(&self, _: *mut u8, _: core::alloc::Layout) {}
}

#[global_allocator]
static ALLOC: Pages = Pages;

struct NoFiles;
impl diskscope_core::Resolver for NoFiles {
    fn resolve(&self, _: &str, _: &str) -> Option<(alloc::string::String, Arc<dyn diskscope_core::ReadAt>)> {
        None
    }
}

/// Open an in-memory image of `len` bytes whose first bytes are QED's magic and walk it
/// through the chain, map, check and report paths, so the whole core is linked.
#[no_mangle]
pub extern "C" fn open_and_map(len: u32) -> u32 {
    let mut bytes = alloc::vec![0u8; len as usize];
    bytes.iter_mut().zip(b"QED\0").for_each(|(d, s)| *d = *s);
    let f: Arc<dyn diskscope_core::ReadAt> = Arc::new(MemFile(bytes));
    match diskscope_core::Chain::open("x", f, None, &NoFiles) {
        Ok(c) => {
            let cells = c.cells(1024).map(|c| c.classes.len()).unwrap_or(0);
            let checked = c.top().check().map(|r| r.findings.len()).unwrap_or(0);
            let report = diskscope_core::report::Report::new(&c).map(|r| r.top.header_fields.len()).unwrap_or(0);
            (cells + checked + report) as u32
        }
        Err(_) => 0,
    }
}

#[no_mangle]
pub extern "C" fn keep_arc() -> usize {
    Arc::strong_count(&Arc::new(0u8))
}
