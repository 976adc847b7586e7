fn main() -> std::process::ExitCode {
    myelin::cli::run()
}
