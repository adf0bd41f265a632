fn main() -> std::process::ExitCode {
    aksup::cli::main()
}
