//! Closed sets of names that are stored and sent as text (a provider, a logging level, a
//! guardrail mode): each an enum, parsed once where the text enters.

/// Why a text is none of a word's names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not one of {names}")]
pub struct UnknownWord {
    /// What was given.
    pub text: String,
    /// The names it could have been, comma-separated.
    pub names: &'static str,
}

/// An enum of unit variants, each with the one name it is stored and sent as: `ALL`, `name`,
/// `parse`, `NAMES`, `Display`, `FromStr` and `TryFrom<String>` (for `sqlx(try_from)`).
macro_rules! word {
    (
        $(#[$meta:meta])*
        pub enum $word:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $word {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $word {
            /// Every value, in declaration order (which is also the discriminant's).
            pub const ALL: [Self; [$($text),+].len()] = [$(Self::$variant),+];
            /// Every name, comma-separated, for error messages.
            pub const NAMES: &'static str = concat!($("`", $text, "`", ", "),+);

            /// Its name in the API and the database.
            pub fn name(self) -> &'static str {
                match self {
                    $( Self::$variant => $text, )+
                }
            }

            /// The value `text` names; `None` for any other text.
            pub fn parse(text: &str) -> Option<Self> {
                match text {
                    $( $text => Some(Self::$variant), )+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $word {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }

        impl std::str::FromStr for $word {
            type Err = $crate::word::UnknownWord;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                Self::parse(text).ok_or_else(|| $crate::word::UnknownWord {
                    text: text.to_owned(),
                    names: Self::NAMES.trim_end_matches(", "),
                })
            }
        }

        impl TryFrom<String> for $word {
            type Error = $crate::word::UnknownWord;

            fn try_from(text: String) -> Result<Self, Self::Error> {
                text.parse()
            }
        }

        impl serde::Serialize for $word {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.name())
            }
        }
    };
}

pub(crate) use word;
