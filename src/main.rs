use std::ffi::c_long;

// glibc's per-thread arenas fragmented badly under sled's write load: peak RSS was more than
// twice that of a single-arena run. mimalloc stays compact and allocates faster.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc v3 options Myelin sets differently, as (index in `mi_option_e` of
/// `mimalloc.h`, mimalloc's default, Myelin's value). Only an unchanged default is replaced,
/// so a `MIMALLOC_*` environment variable still wins, and a mimalloc that numbers its
/// options differently (where the default read back would not match) is left alone.
const TUNED_OPTIONS: [(i32, c_long, c_long); 2] = [
    // purge_delay: milliseconds freed memory stays committed before it is returned to the
    // system; 10 (mimalloc v2's default) instead of a second. Bursts (an argon2 hash's
    // memory, a flush's log buffers) otherwise stay resident for that second: the
    // benchmark's peak RSS fell by about 17 MB (medians 116 → 99 MB) at no throughput cost
    // beyond the noise. 0 saved about 6 MB more but cost about 10 % more CPU per message.
    (15, 1000, 10),
    // generic_collect: how many allocations on a thread's slow path between collections
    // of its heap, which return pages whose blocks were all freed (often by other threads:
    // sled frees through crossbeam-epoch) to be reused or purged. 1000 instead of 10 000:
    // the benchmark's peak RSS fell by about 6 MB (medians of four and eight runs, 86.8 →
    // 80.5 MB) with no change in CPU per message (three alternated pairs). mimalloc checks
    // only every 1000 such allocations, so smaller values act as 1000.
    (34, 10_000, 1000),
];

unsafe extern "C" {
    fn mi_option_get(option: i32) -> c_long;
    fn mi_option_set(option: i32, value: c_long);
}

fn tune_allocator() {
    // SAFETY: plain C calls on option indexes; mi_option_set is not thread-safe, and this
    // runs first in main, before any other thread exists.
    unsafe {
        for (option, default, value) in TUNED_OPTIONS {
            if mi_option_get(option) == default {
                mi_option_set(option, value);
            }
        }
    }
}

fn main() -> std::process::ExitCode {
    tune_allocator();
    myelin::cli::run()
}
