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

/// Probe a few bytes through the core: returns 1 if they look like QED.
#[no_mangle]
pub extern "C" fn probe_qed(b0: u8, b1: u8, b2: u8, b3: u8) -> u32 {
    let f = MemFile(alloc::vec![b0, b1, b2, b3]);
    match diskscope_core::formats::probe(&f) {
        Ok(Some(d)) if d.name == "qed" => 1,
        _ => 0,
    }
}

#[no_mangle]
pub extern "C" fn keep_arc() -> usize {
    Arc::strong_count(&Arc::new(0u8))
}
