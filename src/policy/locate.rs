//! Where a node of a YAML document is: serde_yaml keeps no spans, but it attaches the
//! position of the node being read to any error a deserializer raises there. So to find
//! `rules[2].commands[1]`, read the text again with a visitor that walks down that path and
//! raises a marker error at the node; the error's location is the node's line and column.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// One step of a path into the document.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

const MARKER: &str = "podgate-policy-locate-marker";

/// The 1-based (line, column) of the node at `path`, if there is one.
pub(crate) fn locate(text: &str, path: &[Seg<'_>]) -> Option<(usize, usize)> {
    let de = serde_yaml::Deserializer::from_str(text);
    match (Probe { path }).deserialize(de) {
        Ok(()) => None,
        Err(e) if e.to_string().contains(MARKER) => e.location().map(|l| (l.line(), l.column())),
        Err(_) => None,
    }
}

struct Probe<'p> {
    path: &'p [Seg<'p>],
}

impl<'de> DeserializeSeed<'de> for Probe<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl Probe<'_> {
    fn here<E: de::Error>(&self) -> Result<(), E> {
        if self.path.is_empty() {
            Err(E::custom(MARKER))
        } else {
            Ok(())
        }
    }
}

impl<'de> Visitor<'de> for Probe<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.here()?;
        let wanted = match self.path.first() {
            Some(Seg::Key(k)) => Some(*k),
            _ => None,
        };
        while let Some(key) = map.next_key::<Key>()? {
            match (wanted, key.0) {
                (Some(w), Some(k)) if k == w => {
                    let rest = self.path.get(1..).unwrap_or_default();
                    map.next_value_seed(Probe { path: rest })?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.here()?;
        let wanted = match self.path.first() {
            Some(Seg::Index(i)) => Some(*i),
            _ => None,
        };
        let mut index = 0;
        loop {
            if wanted == Some(index) {
                let rest = self.path.get(1..).unwrap_or_default();
                if seq.next_element_seed(Probe { path: rest })?.is_none() {
                    break;
                }
            } else if seq.next_element::<IgnoredAny>()?.is_none() {
                break;
            }
            index += 1;
        }
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.here()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.here()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.here()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.here()
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.here()
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.here()
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.here()
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

/// A mapping key: its text if it is a string, else nothing.
struct Key(Option<String>);

impl<'de> de::Deserialize<'de> for Key {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(Key(Some(v.to_owned())))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Key, E> {
                Ok(Key(None))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Key, E> {
                Ok(Key(None))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Key, E> {
                Ok(Key(None))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Key, E> {
                Ok(Key(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Key, E> {
                Ok(Key(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Key, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Key(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Key, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Key(None))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nodes() {
        let text = "\
# comment
rules:
  - name: a
    commands:
      - 'ls'
      - \"cat x\"
  - name: b
    ports: [1, 2]
    flag: true
";
        let at = |path: &[Seg<'_>]| locate(text, path).map(|(l, _)| l);
        assert_eq!(at(&[Seg::Key("rules")]), Some(3));
        assert_eq!(at(&[Seg::Key("rules"), Seg::Index(0)]), Some(3));
        assert_eq!(
            at(&[
                Seg::Key("rules"),
                Seg::Index(0),
                Seg::Key("commands"),
                Seg::Index(1)
            ]),
            Some(6)
        );
        assert_eq!(
            at(&[Seg::Key("rules"), Seg::Index(1), Seg::Key("name")]),
            Some(7)
        );
        assert_eq!(
            at(&[
                Seg::Key("rules"),
                Seg::Index(1),
                Seg::Key("ports"),
                Seg::Index(1)
            ]),
            Some(8)
        );
        assert_eq!(
            at(&[Seg::Key("rules"), Seg::Index(1), Seg::Key("flag")]),
            Some(9)
        );
        assert_eq!(at(&[Seg::Key("rules"), Seg::Index(2)]), None);
        assert_eq!(at(&[Seg::Key("nope")]), None);
        assert_eq!(locate("a: [", &[Seg::Key("b")]), None);
    }
}
