//! The `drainpipe` binary.

fn main() {
    println!("drainpipe: the proxy is not built yet");
}
