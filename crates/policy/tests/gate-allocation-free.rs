//! The per-packet gate and the grant operations never allocate.
//!
//! A counting global allocator (this file's only reason for `unsafe`) counts allocations
//! made by the test's own thread while it runs the gate for every role, kind and source,
//! and a stream of grant operations.

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;
use std::time::{Duration, Instant};

use policy::{BuiltinProfile, CameraSetting, Grants, Lens, MediaKind, Role, Source};

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

struct Counting;

// SAFETY: every call is forwarded unchanged to the system allocator; counting only touches
// a const-initialised thread-local `Cell`, which itself never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn the_gate_and_the_grant_operations_do_not_allocate() {
    let t0 = Instant::now();
    let mut grants = Grants::new(&BuiltinProfile::MerchantVideo.profile(), t0);
    let before = allocations();

    let mut forwarded = 0u64;
    for i in 0..10_000u32 {
        for role in Role::ALL {
            for kind in MediaKind::ALL {
                forwarded += u64::from(black_box(&grants).may_forward(role, kind));
            }
            for source in Source::ALL {
                forwarded += u64::from(black_box(&grants).may_forward_source(role, source));
            }
        }
        let now = t0 + Duration::from_millis(u64::from(i));
        let setting = match i % 3 {
            0 => CameraSetting::On(Lens::Rear),
            1 => CameraSetting::On(Lens::Front),
            _ => CameraSetting::Off,
        };
        let actor = Role::ALL[(i % 2) as usize];
        let _ = black_box(grants.set_camera(actor, Role::Customer, setting, now));
        let _ = black_box(grants.request_camera(Role::Merchant, Role::Customer));
        let _ = black_box(grants.set_screen(Role::Merchant, Role::Merchant, i % 2 == 0));
        black_box(grants.camera_time(Role::Customer, now));
    }

    assert_eq!(allocations() - before, 0, "the gate allocated");
    assert!(forwarded > 0);
}
