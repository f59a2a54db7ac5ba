//! Link-time registration across crates: the message is defined in `billing-api`, its
//! handler in `billing`, and this test names nothing of `billing`. The one line below
//! is what keeps the handler crate in the program: without it rustc does not link
//! `billing` at all, and `send` fails with `flext.bus.no_handler` (checked by hand when
//! this test was written; one binary cannot show both).

use billing as _;

use billing_api::IssueInvoice;
use flext::prelude::*;

#[tokio::test]
async fn a_handler_in_another_crate_is_registered_when_that_crate_is_linked() {
    let bus = Bus::builder().build().unwrap();
    let number = bus
        .send(
            IssueInvoice {
                customer: "acme".into(),
                cents: 4_200,
            },
            &Context::new(),
        )
        .await
        .unwrap();
    assert_eq!(number, 1200);

    let registered: Vec<_> = flext::registry::handlers()
        .filter(|h| h.message() == "IssueInvoice")
        .map(|h| (h.handler(), h.module()))
        .collect();
    assert_eq!(registered, [("issue_invoice", "billing")]);

    // By name too: the message crate registered the type for JSON dispatch.
    let out = bus
        .send_json(
            "IssueInvoice",
            r#"{"customer": "acme", "cents": 0}"#,
            &Context::new(),
        )
        .await
        .unwrap_err();
    assert_eq!(out.code(), "invoice.empty");
}
