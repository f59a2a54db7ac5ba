use flext::prelude::*;

#[command(output = (), validate)]
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Rename {
    name: String,
}

fn main() {
    let bus = Bus::builder().build().unwrap();
    let _ = bus.send(Rename { name: "x".into() }, &Context::new());
}
