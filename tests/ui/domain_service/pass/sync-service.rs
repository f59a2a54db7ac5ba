use flext::prelude::*;

struct Quote {
    net_cents: u64,
    tax_percent: u64,
}

#[domain_service(fail_fast)]
impl Quote {
    #[business_rule(code = "quote.net.positive")]
    fn net_positive(&self) -> RuleResult {
        ensure!(self.net_cents > 0, "net amount must be positive")
    }

    #[step]
    fn tax(&self) -> Result<u64> {
        Ok(self.net_cents * self.tax_percent / 100)
    }

    #[step]
    fn gross(&self, tax: u64, _ctx: &Context) -> Result<u64> {
        Ok(self.net_cents + tax)
    }
}

fn main() {
    let q = Quote { net_cents: 1000, tax_percent: 20 };
    assert_eq!(q.execute_sync(&Context::new()).unwrap(), 1200);
}
