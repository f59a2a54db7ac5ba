//! The boxed future type middleware, async handlers and saga steps return.

use std::future::Future;
use std::pin::Pin;

/// A boxed, `Send` future, as middleware and async handlers return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
