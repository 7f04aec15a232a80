//! Examples live in `examples/*.rs`; run `cargo run -p shopcall-examples --example embed`.
