// mimalloc returns freed memory to the OS promptly: the host's RSS stays flat over
// long uploads, where glibc's arenas kept growing with fragmentation.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    floe::cli::run()
}
