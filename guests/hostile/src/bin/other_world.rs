//! A WASI command: a component of another world, which `host plugins add` must refuse.
fn main() {
    println!("I am not a floe plugin");
}
