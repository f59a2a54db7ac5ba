use flext::prelude::*;

#[event(version = 0)]
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct UserCreated {
    id: u64,
}

fn main() {
    let bus = Bus::builder().build().unwrap();
    let _ = bus.publish(UserCreated { id: 1 }, &Context::new());
}
