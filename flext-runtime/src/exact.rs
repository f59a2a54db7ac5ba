//! JSON that comes back bit for bit (layer 1).
//!
//! Everything flext keeps (events, snapshots, saga inputs and outputs, outbox rows) is
//! stored as JSON text. serde_json reads its own text back exactly (with its
//! `float_roundtrip` feature, which flext turns on) except in two cases where the JSON
//! form has already lost the value:
//!
//! - a float that is NaN or infinite, which serde_json writes as `null`;
//! - `Some(x)` where `x` itself serialises as `null` (`Some(None)`, `Some(())`), which
//!   reads back as `None`.
//!
//! [`to_exact_value`] refuses both before anything is stored, so a value that cannot
//! come back is an error at append, never a silent change on the way through the store.
//! It walks the value once with a serializer that writes nothing (no allocation), then
//! builds the JSON.

use std::fmt::Display;

use serde::ser::{self, Serialize};

/// Why a value has no exact JSON form. Turned into a `serde_json::Error` by
/// [`to_exact_value`].
#[derive(Debug)]
struct Inexact(String);

impl Display for Inexact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Inexact {}

impl ser::Error for Inexact {
    fn custom<T: Display>(msg: T) -> Self {
        Inexact(msg.to_string())
    }
}

/// `value` as JSON, or an error when the JSON would not read back as the same value
/// (a NaN or infinite float; `Some` of a value that serialises as `null`).
///
/// # Errors
///
/// serde_json's error when `value` does not serialise, and one naming the field kind
/// and the fix when it has no exact JSON form.
pub fn to_exact_value<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<serde_json::Value> {
    value
        .serialize(Check { in_some: false })
        .map_err(|e| <serde_json::Error as ser::Error>::custom(e.0))?;
    serde_json::to_value(value)
}

fn non_finite(v: f64) -> Result<(), Inexact> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(Inexact(format!(
            "the float {v} has no JSON form (it would be stored as null and not read back): \
             refuse it in the command, or keep it as an enum or a string"
        )))
    }
}

/// A serializer that writes nothing and fails on what JSON cannot keep.
#[derive(Clone, Copy)]
struct Check {
    /// The value being serialised is the content of a `Some`.
    in_some: bool,
}

impl Check {
    fn null(self, what: &str) -> Result<(), Inexact> {
        if self.in_some {
            Err(Inexact(format!(
                "`Some` of {what} is written as null and reads back as `None`: \
                 use a type that keeps the difference (an enum, or \
                 `#[serde(with = ...)]` on the field)"
            )))
        } else {
            Ok(())
        }
    }
    const INNER: Check = Check { in_some: false };
}

macro_rules! fine {
    ($($name:ident: $t:ty),*) => {
        $(fn $name(self, _: $t) -> Result<(), Inexact> { Ok(()) })*
    };
}

impl ser::Serializer for Check {
    type Ok = ();
    type Error = Inexact;
    type SerializeSeq = Check;
    type SerializeTuple = Check;
    type SerializeTupleStruct = Check;
    type SerializeTupleVariant = Check;
    type SerializeMap = Check;
    type SerializeStruct = Check;
    type SerializeStructVariant = Check;

    fine!(serialize_bool: bool, serialize_i8: i8, serialize_i16: i16, serialize_i32: i32,
          serialize_i64: i64, serialize_i128: i128, serialize_u8: u8, serialize_u16: u16,
          serialize_u32: u32, serialize_u64: u64, serialize_u128: u128, serialize_char: char,
          serialize_str: &str, serialize_bytes: &[u8]);

    fn serialize_f32(self, v: f32) -> Result<(), Inexact> {
        non_finite(f64::from(v))
    }
    fn serialize_f64(self, v: f64) -> Result<(), Inexact> {
        non_finite(v)
    }
    fn serialize_none(self) -> Result<(), Inexact> {
        self.null("`None`")
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Inexact> {
        value.serialize(Check { in_some: true })
    }
    fn serialize_unit(self) -> Result<(), Inexact> {
        self.null("`()`")
    }
    fn serialize_unit_struct(self, name: &'static str) -> Result<(), Inexact> {
        self.null(&format!("the unit struct `{name}`"))
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
    ) -> Result<(), Inexact> {
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Inexact> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        value: &T,
    ) -> Result<(), Inexact> {
        value.serialize(Self::INNER)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Check, Inexact> {
        Ok(Self::INNER)
    }
    fn serialize_tuple(self, _: usize) -> Result<Check, Inexact> {
        Ok(Self::INNER)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Check, Inexact> {
        Ok(Self::INNER)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Check, Inexact> {
        Ok(Self::INNER)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Check, Inexact> {
        Ok(Self::INNER)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Check, Inexact> {
        Ok(Self::INNER)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Check, Inexact> {
        Ok(Self::INNER)
    }
}

macro_rules! compound {
    ($($tr:ident :: $method:ident),*) => {
        $(impl ser::$tr for Check {
            type Ok = ();
            type Error = Inexact;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Inexact> {
                value.serialize(Check::INNER)
            }
            fn end(self) -> Result<(), Inexact> {
                Ok(())
            }
        })*
    };
}

compound!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

impl ser::SerializeMap for Check {
    type Ok = ();
    type Error = Inexact;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Inexact> {
        key.serialize(Check::INNER)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Inexact> {
        value.serialize(Check::INNER)
    }
    fn end(self) -> Result<(), Inexact> {
        Ok(())
    }
}

macro_rules! named_fields {
    ($($tr:ident),*) => {
        $(impl ser::$tr for Check {
            type Ok = ();
            type Error = Inexact;
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                _: &'static str,
                value: &T,
            ) -> Result<(), Inexact> {
                value.serialize(Check::INNER)
            }
            fn end(self) -> Result<(), Inexact> {
                Ok(())
            }
        })*
    };
}

named_fields!(SerializeStruct, SerializeStructVariant);

#[cfg(test)]
mod tests {
    use super::to_exact_value;

    #[test]
    fn refuses_what_json_cannot_keep_and_keeps_the_rest() {
        assert!(to_exact_value(&f64::NAN).is_err());
        assert!(to_exact_value(&vec![1.0, f64::INFINITY]).is_err());
        assert!(to_exact_value(&Some(None::<u8>)).is_err());
        assert!(to_exact_value(&Some(())).is_err());
        let err = to_exact_value(&Some(f32::NEG_INFINITY))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no JSON form"), "{err}");
        // Nested options that JSON can tell apart are fine.
        assert!(to_exact_value(&Some(vec![None::<u8>, Some(1)])).is_ok());
        assert!(to_exact_value(&None::<Option<u8>>).is_ok());
        assert_eq!(to_exact_value(&-0.0f64).unwrap().to_string(), "-0.0");
    }
}
