use flext::prelude::*;

#[event]
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct UserCreated;

#[event_handler]
fn on_created(_: UserCreated) {}

fn main() {}
