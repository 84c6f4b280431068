fn main() -> anyhow::Result<()> {
    floe::cli::run()
}
