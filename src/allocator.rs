//! The global allocator: mimalloc, asked for a plain block whenever the alignment is one every
//! block of that size has anyway.
//!
//! The `mimalloc` crate passes every allocation to `mi_malloc_aligned`, whose fast path takes
//! only blocks up to 1 KiB; a larger one with Rust's usual 8- or 16-byte alignment then went
//! through mimalloc's generic aligned path and, for sizes that are not a power of two, its
//! over-allocation fallback (a bigger block, an offset pointer, about 150 instructions more).
//! A proxied request makes about seven such allocations (its boxed futures, header maps, read
//! buffers). `mi_malloc` already guarantees `MI_MAX_ALIGN_SIZE` (16 bytes on the targets
//! Gatehouse builds for), as glibc's `malloc` does, so those go to it; a stricter alignment
//! still takes the aligned calls. This is what Rust's own `System` allocator does with
//! `malloc`.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys::{
    mi_free, mi_malloc, mi_malloc_aligned, mi_realloc, mi_realloc_aligned, mi_zalloc,
    mi_zalloc_aligned,
};

/// The alignment every block `mi_malloc` returns has (mimalloc's `MI_MAX_ALIGN_SIZE`).
const PLAIN_ALIGN: usize = 16;

/// mimalloc as the global allocator (`#[global_allocator]` in the binary).
pub struct Mimalloc;

/// Whether a plain `mi_malloc` block satisfies `layout`: 16-byte alignment is guaranteed for
/// blocks of at least 16 bytes, and a smaller block is aligned to its size's power of two, so
/// an alignment no larger than the size is met too (the rule `System` applies to `malloc`).
fn plain(layout: &Layout) -> bool {
    layout.align() <= PLAIN_ALIGN && layout.align() <= layout.size()
}

// SAFETY: every block comes from mimalloc and goes back to it (`mi_free` takes blocks from any
// of its allocation calls, aligned or not); the alignment asked for is met as `plain` explains,
// otherwise by the aligned calls.
unsafe impl GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if plain(&layout) {
            mi_malloc(layout.size()).cast()
        } else {
            mi_malloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if plain(&layout) {
            mi_zalloc(layout.size()).cast()
        } else {
            mi_zalloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        mi_free(ptr.cast::<c_void>());
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // The new block must meet the alignment at its new size, the rule `plain` checks.
        let grown = Layout::from_size_align_unchecked(new_size, layout.align());
        if plain(&grown) {
            mi_realloc(ptr.cast::<c_void>(), new_size).cast()
        } else {
            mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_meet_their_alignment_and_keep_their_bytes_when_grown() {
        let allocator = Mimalloc;
        for (size, align) in [
            (1, 1),
            (8, 8),
            (24, 8),
            (2176, 8),
            (4096, 16),
            (100, 64),
            (5000, 4096),
        ] {
            let layout = Layout::from_size_align(size, align).expect("a layout");
            // SAFETY: a non-zero size; the block is written within its size and freed once.
            unsafe {
                let block = allocator.alloc(layout);
                assert!(!block.is_null());
                assert_eq!(block as usize % align, 0, "{size} bytes at {align}");
                block.write_bytes(0xa5, size);
                let grown = allocator.realloc(block, layout, size * 3);
                assert_eq!(grown as usize % align, 0, "{size} grown at {align}");
                assert!((0..size).all(|i| *grown.add(i) == 0xa5));
                allocator.dealloc(
                    grown,
                    Layout::from_size_align(size * 3, align).expect("a layout"),
                );
                let zeroed = allocator.alloc_zeroed(layout);
                assert_eq!(zeroed as usize % align, 0);
                assert!((0..size).all(|i| *zeroed.add(i) == 0));
                allocator.dealloc(zeroed, layout);
            }
        }
    }
}
