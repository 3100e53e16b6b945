fn main() { gameday::cli::main() }
