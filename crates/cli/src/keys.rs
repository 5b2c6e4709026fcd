//! Every key the configuration file accepts, found by walking `Config`'s own
//! `Deserialize` implementation (so a field added to any section is found
//! without a list to keep up to date). Used by the test that holds
//! `docs/configuration.md` to the code.
//!
//! How: a deserializer that answers `deserialize_struct` by recording the
//! field names serde hands it, and follows one planned path of keys into the
//! nested sections; every other value is a leaf and fails the walk there (the
//! names were recorded first). One walk per key, breadth first.

use std::cell::RefCell;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// The dotted keys below `T` (`server.idle_timeout`, `upstream.health.path`;
/// arrays of tables are walked like tables).
pub fn keys<'de, T: Deserialize<'de>>() -> Vec<String> {
    let mut found = Vec::new();
    let mut plans: Vec<Vec<&'static str>> = vec![Vec::new()];
    while let Some(plan) = plans.pop() {
        let seen = RefCell::new(None);
        let _ = T::deserialize(Walk {
            plan: &plan,
            seen: &seen,
        });
        if let Some(fields) = seen.into_inner() {
            for f in fields {
                let mut next = plan.clone();
                next.push(f);
                found.push(next.join("."));
                plans.push(next);
            }
        }
    }
    found.sort();
    found
}

/// The walk's position: the keys still to follow, and where to record the
/// fields of the struct the plan ends at.
#[derive(Clone, Copy)]
struct Walk<'a> {
    plan: &'a [&'static str],
    seen: &'a RefCell<Option<&'static [&'static str]>>,
}

#[derive(Debug)]
struct Leaf;

impl std::fmt::Display for Leaf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("leaf")
    }
}

impl std::error::Error for Leaf {}

impl de::Error for Leaf {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Leaf
    }
}

impl<'de> Deserializer<'de> for Walk<'_> {
    type Error = Leaf;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Leaf> {
        Err(Leaf)
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Leaf> {
        v.visit_some(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Leaf> {
        v.visit_seq(Once(Some(self)))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Leaf> {
        match self.plan.split_first() {
            None => {
                *self.seen.borrow_mut() = Some(fields);
                Err(Leaf)
            }
            Some((key, rest)) => v.visit_map(Follow {
                key: Some(key),
                walk: Walk {
                    plan: rest,
                    seen: self.seen,
                },
            }),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct newtype_struct tuple
        tuple_struct map enum identifier ignored_any
    }
}

/// A sequence of one element (an array of tables walked as its first table).
struct Once<'a>(Option<Walk<'a>>);

impl<'de> SeqAccess<'de> for Once<'_> {
    type Error = Leaf;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Leaf> {
        self.0.take().map(|w| seed.deserialize(w)).transpose()
    }
}

/// A table with the one key the plan follows.
struct Follow<'a> {
    key: Option<&'static str>,
    walk: Walk<'a>,
}

impl<'de> MapAccess<'de> for Follow<'_> {
    type Error = Leaf;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Leaf> {
        self.key
            .take()
            .map(|k| seed.deserialize(de::value::BorrowedStrDeserializer::<Leaf>::new(k)))
            .transpose()
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Leaf> {
        seed.deserialize(self.walk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_and_optional_sections() {
        let keys = keys::<crate::config::Config>();
        for want in [
            "listener",
            "listener.listen",
            "upstream.health.interval",
            "upstream.ejection.eject_for",
            "server.idle_timeout",
            "forward.allow_ports",
            "access_log",
        ] {
            assert!(keys.iter().any(|k| k == want), "{want} not in {keys:?}");
        }
    }
}
