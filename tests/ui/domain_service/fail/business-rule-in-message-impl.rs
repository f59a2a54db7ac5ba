use flext::prelude::*;

#[command(output = ())]
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Rename {
    name: String,
}

// The rules of a message go in a `#[business_rules]` impl.
impl Rename {
    #[business_rule]
    fn name_present(&self) -> RuleResult {
        ensure!(!self.name.is_empty(), "a name is required")
    }
}

fn main() {
    let _ = Rename { name: "x".into() }.name_present();
    let bus = Bus::builder().build().unwrap();
    let _ = bus.send(Rename { name: "x".into() }, &Context::new());
}
