//! The `trustfs` binary: parse, dispatch, map errors to exit codes.
fn main() {
    std::process::exit(trustfs::cli::main());
}
