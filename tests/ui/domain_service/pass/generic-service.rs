use std::fmt::Display;

use flext::prelude::*;

struct Render<T> {
    items: Vec<T>,
}

#[domain_service]
impl<T: Display + Clone> Render<T> {
    #[business_rule(code = "render.items.nonempty")]
    fn has_items(&self) -> RuleResult {
        ensure!(!self.items.is_empty(), "nothing to render")
    }

    #[step]
    fn first(&self) -> Result<T> {
        Ok(self.items[0].clone())
    }

    #[step]
    fn render(&self, item: T) -> Result<String> {
        Ok(format!("<{item}>"))
    }
}

fn main() {
    let out = Render { items: vec![3, 4] }.execute_sync(&Context::new()).unwrap();
    assert_eq!(out, "<3>");
    let err = Render::<u8> { items: vec![] }.execute_sync(&Context::new()).unwrap_err();
    assert_eq!(err.code(), "render.items.nonempty");
}
