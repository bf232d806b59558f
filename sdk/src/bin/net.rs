//! The `net` command-line tool (being written).

fn main() {
    eprintln!("net: not yet implemented");
    std::process::exit(2);
}
