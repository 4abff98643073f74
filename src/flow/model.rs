//! What a flow file says, as written: the YAML shape with the position of
//! every name, so the validator can point at the exact line and column.
//! [`super::compile`] turns it into the checked [`super::Flow`].

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_saphyr::Spanned;

/// A name with its place in the file.
pub type Name = Spanned<String>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawFlow {
    /// The flow's name; defaults to the file name without `.yaml`.
    pub flow: Option<Name>,
    #[serde(default)]
    pub description: Option<String>,
    pub entry: Name,
    /// Where a run-time error goes when its node has no `on-error`.
    pub on_error: Option<Name>,
    pub nodes: Entries<RawNode>,
}

/// One state. Exactly one of the kind keys (`play`, `menu`, …) is set; the
/// rest are its transitions and options. Serde's `flatten` cannot combine
/// with `deny_unknown_fields`, so the kinds are optional keys checked in code.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawNode {
    pub play: Option<Spanned<PlayList>>,
    pub barge_in: Option<bool>,
    pub menu: Option<RawMenu>,
    pub collect: Option<RawCollect>,
    pub hours: Option<Name>,
    pub webhook: Option<RawWebhook>,
    pub set: Option<Entries<Spanned<Text>>>,
    pub branch: Option<Vec<RawArm>>,
    pub queue: Option<Name>,
    pub priority: Option<Spanned<Text>>,
    pub skills: Option<Vec<Name>>,
    pub transfer: Option<Name>,
    pub record: Option<RawRecord>,
    pub voicemail: Option<RawRecord>,
    pub survey: Option<RawSurvey>,
    pub goto: Option<Name>,
    pub hangup: Option<Spanned<Hangup>>,
    /// The queue a callback booked here waits in.
    pub callback: Option<Name>,

    pub next: Option<Name>,
    pub open: Option<Name>,
    pub closed: Option<Name>,
    pub exhausted: Option<Name>,
    pub on_error: Option<Name>,
    pub on_timeout: Option<Name>,
    #[serde(rename = "else")]
    pub otherwise: Option<Name>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawMenu {
    pub prompt: Option<Spanned<PlayList>>,
    pub options: Entries<Name>,
    pub timeout: Option<Dur>,
    pub retries: Option<u32>,
    pub no_input: Option<Spanned<PlayList>>,
    pub invalid: Option<Spanned<PlayList>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawCollect {
    pub prompt: Option<Spanned<PlayList>>,
    pub into: Option<Name>,
    pub min: Option<Spanned<u32>>,
    pub max: Option<Spanned<u32>>,
    /// The key that ends the entry (default `#`); `none` for no terminator.
    pub end: Option<Spanned<Text>>,
    pub timeout: Option<Dur>,
    pub inter_digit_timeout: Option<Dur>,
    pub pattern: Option<Spanned<String>>,
    pub retries: Option<u32>,
    pub confirm: Option<bool>,
    /// Card data (PCI): the recording pauses while it runs, and the
    /// digits are masked everywhere but in the flow itself.
    pub sensitive: Option<bool>,
    pub no_input: Option<Spanned<PlayList>>,
    pub invalid: Option<Spanned<PlayList>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawWebhook {
    pub url: Option<Spanned<String>>,
    pub method: Option<Spanned<String>>,
    pub headers: Entries<Spanned<Text>>,
    pub body: Option<Entries<Spanned<Text>>>,
    pub into: Option<Name>,
    pub timeout: Option<Dur>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawArm {
    #[serde(rename = "if")]
    pub condition: Spanned<String>,
    pub then: Name,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawRecord {
    pub prompt: Option<Spanned<PlayList>>,
    pub max: Option<Dur>,
    pub beep: Option<bool>,
    pub end: Option<Spanned<Text>>,
    /// `record`: the variable that receives the file's path.
    pub into: Option<Name>,
    /// `voicemail`: the mailbox (default: the flow's name).
    pub mailbox: Option<Name>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawSurvey {
    pub prompt: Option<Spanned<PlayList>>,
    pub question: Option<Name>,
    pub timeout: Option<Dur>,
    pub retries: Option<u32>,
    pub into: Option<Name>,
    pub no_input: Option<Spanned<PlayList>>,
    pub invalid: Option<Spanned<PlayList>>,
}

/// What a `play`, `prompt` or `hangup` says: prompt names and spoken values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlayList(pub Vec<PlayItem>);

#[derive(Debug, Clone, PartialEq)]
pub enum PlayItem {
    /// A file under `sounds/`, without extension: `menu/main`.
    Prompt(String),
    /// `{ say: digits|number|duration, value: "{{account}}" }`
    Say { how: String, value: String },
}

/// `hangup: true`, `hangup: goodbye` or `hangup: [thanks, goodbye]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Hangup(pub PlayList);

/// A scalar read as text, so `1: sales` and `"1": sales` mean the same.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Text(pub String);

/// A duration written as `5s`, `500ms`, `2m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

/// A map kept in file order, with each key's position; duplicate keys are
/// left for the validator to report.
#[derive(Debug)]
pub struct Entries<V>(pub Vec<(Spanned<Text>, V)>);

impl<V> Default for Entries<V> {
    fn default() -> Self {
        Entries(Vec::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Entries<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V2<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for V2<V> {
            type Value = Entries<V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of names to values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(k) = map.next_key::<Spanned<Text>>()? {
                    out.push((k, map.next_value()?));
                }
                Ok(Entries(out))
            }
        }
        d.deserialize_map(V2(PhantomData))
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct T;
        impl Visitor<'_> for T {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("text or a number")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text(v.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
        }
        d.deserialize_any(T)
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        crate::config::parse_duration(&s)
            .map(Dur)
            .map_err(de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for PlayItem {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct P;
        impl<'de> Visitor<'de> for P {
            type Value = PlayItem;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a prompt name, or { say: digits|number|duration, value: \"{{variable}}\" }",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PlayItem, E> {
                Ok(PlayItem::Prompt(v.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PlayItem, A::Error> {
                let (mut how, mut value) = (None, None);
                while let Some(k) = map.next_key::<String>()? {
                    match k.as_str() {
                        "say" => how = Some(map.next_value::<String>()?),
                        "value" => value = Some(map.next_value::<Text>()?.0),
                        other => {
                            return Err(de::Error::unknown_field(other, &["say", "value"]));
                        }
                    }
                }
                match (how, value) {
                    (Some(how), Some(value)) => Ok(PlayItem::Say { how, value }),
                    (None, _) => Err(de::Error::missing_field("say")),
                    (_, None) => Err(de::Error::missing_field("value")),
                }
            }
        }
        d.deserialize_any(P)
    }
}

impl<'de> Deserialize<'de> for PlayList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct L;
        impl<'de> Visitor<'de> for L {
            type Value = PlayList;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a prompt name or a list of prompts and `say` items")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PlayList, E> {
                Ok(PlayList(vec![PlayItem::Prompt(v.to_owned())]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<PlayList, A::Error> {
                let mut out = Vec::new();
                while let Some(item) = seq.next_element()? {
                    out.push(item);
                }
                Ok(PlayList(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<PlayList, A::Error> {
                let item = PlayItem::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(PlayList(vec![item]))
            }
        }
        d.deserialize_any(L)
    }
}

impl<'de> Deserialize<'de> for Hangup {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct H;
        impl<'de> Visitor<'de> for H {
            type Value = Hangup;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`true`, a prompt to play first, or a list of prompts")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Hangup, E> {
                if v {
                    Ok(Hangup::default())
                } else {
                    Err(E::custom(
                        "`hangup: false` does nothing: remove the node or write `hangup: true`",
                    ))
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Hangup, E> {
                Ok(Hangup(PlayList(vec![PlayItem::Prompt(v.to_owned())])))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Hangup, A::Error> {
                PlayList::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(Hangup)
            }
        }
        d.deserialize_any(H)
    }
}
