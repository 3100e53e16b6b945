fn main() -> std::process::ExitCode {
    gameday::cli::main()
}
