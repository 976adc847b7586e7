// glibc's per-thread arenas fragmented badly under sled's write load: peak RSS was more than
// twice that of a single-arena run. mimalloc stays compact and allocates faster.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    myelin::cli::run()
}
