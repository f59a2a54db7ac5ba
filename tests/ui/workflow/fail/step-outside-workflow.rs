use flext::prelude::*;

struct Import;

impl Import {
    #[workflow_step]
    async fn extract(&self) -> Result<Vec<String>> {
        Ok(vec!["row".into()])
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let rows = Import.extract().await.unwrap();
    assert_eq!(rows.len(), 1);
    let run = Import.run(&Context::new()).await;
    assert!(run.is_success());
}
