//! The ids and offsets every Weir crate shares.
//!
//! Kafka's protocol carries all of these as bare integers, and uses -1 for "none" in most of
//! them. Inside Weir each is its own type, so an offset cannot be passed where an epoch is
//! expected, and "none" is `Option::None`. The conversion happens at the wire, in one place
//! per request: [`LeaderEpoch::from_wire`] and friends read -1 (or any negative value) as none,
//! and [`to_wire`](BrokerId::to_wire) writes none back as -1.
//!
//! Each type is `#[serde(transparent)]`, so a stored record keeps the integer it always had.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident($inner:ty)) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub $inner);

        impl $name {
            /// The value as the wire carries it.
            pub const fn get(self) -> $inner {
                self.0
            }

            /// A value from the wire, where a negative one means none.
            pub fn from_wire(value: $inner) -> Option<$name> {
                (value >= 0).then_some($name(value))
            }

            /// An optional value for the wire, where none is -1.
            pub fn to_wire(value: Option<$name>) -> $inner {
                value.map_or(-1, |v| v.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl From<$name> for $inner {
            fn from(value: $name) -> $inner {
                value.0
            }
        }
    };
}

id_type!(
    /// A record's position in one partition's log: the first record is at the log start offset,
    /// and the next one appended gets the log end offset.
    Offset(i64)
);
id_type!(
    /// The epoch of a partition's leadership: it grows each time the controller elects a leader
    /// (or changes the replicas), and every batch carries the epoch it was written in.
    LeaderEpoch(i32)
);
id_type!(
    /// A broker's `node.id`.
    BrokerId(i32)
);
id_type!(
    /// An idempotent or transactional producer's id, given out by InitProducerId.
    ProducerId(i64)
);
id_type!(
    /// A producer's epoch: a newer one fences the producers with the same id and an older epoch.
    ProducerEpoch(i16)
);

impl Offset {
    pub const ZERO: Offset = Offset(0);

    /// The offset `n` records later.
    pub const fn plus(self, n: i64) -> Offset {
        Offset(self.0 + n)
    }

    /// The offset after this one.
    pub const fn next(self) -> Offset {
        self.plus(1)
    }

    /// How many offsets lie from `earlier` up to this one (negative if `earlier` is later).
    pub const fn since(self, earlier: Offset) -> i64 {
        self.0 - earlier.0
    }
}

impl LeaderEpoch {
    /// The epoch after this one.
    pub const fn next(self) -> LeaderEpoch {
        LeaderEpoch(self.0 + 1)
    }
}

/// Serde for an `Option` of one of these types stored as -1 when none, the form Weir's stored
/// records (and Kafka's) have always used: `#[serde(with = "weir_types::minus_one_as_none")]`.
pub mod minus_one_as_none {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// The integer form a type has on the wire and on disk.
    pub trait Wire: Sized + Copy {
        type Int: Serialize + for<'de> Deserialize<'de> + Copy;
        fn to_int(value: Option<Self>) -> Self::Int;
        fn from_int(value: Self::Int) -> Option<Self>;
    }

    macro_rules! wire {
        ($($name:ident($inner:ty)),*) => {$(
            impl Wire for super::$name {
                type Int = $inner;
                fn to_int(value: Option<Self>) -> $inner {
                    super::$name::to_wire(value)
                }
                fn from_int(value: $inner) -> Option<Self> {
                    super::$name::from_wire(value)
                }
            }
        )*};
    }
    wire!(
        Offset(i64),
        LeaderEpoch(i32),
        BrokerId(i32),
        ProducerId(i64),
        ProducerEpoch(i16)
    );

    pub fn serialize<T: Wire, S: Serializer>(value: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
        T::to_int(*value).serialize(s)
    }

    pub fn deserialize<'de, T: Wire, D: Deserializer<'de>>(d: D) -> Result<Option<T>, D::Error> {
        T::Int::deserialize(d).map(T::from_int)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Stored {
        #[serde(with = "minus_one_as_none")]
        leader: Option<BrokerId>,
        epoch: LeaderEpoch,
    }

    #[test]
    fn none_is_minus_one_on_the_wire_and_on_disk() {
        assert_eq!(BrokerId::from_wire(-1), None);
        assert_eq!(BrokerId::from_wire(3), Some(BrokerId(3)));
        assert_eq!(LeaderEpoch::to_wire(None), -1);
        let none = Stored {
            leader: None,
            epoch: LeaderEpoch(4),
        };
        let json = serde_json::to_string(&none).expect("encodes");
        assert_eq!(json, r#"{"leader":-1,"epoch":4}"#);
        assert_eq!(
            serde_json::from_str::<Stored>(&json).expect("decodes"),
            none
        );
        let some: Stored = serde_json::from_str(r#"{"leader":2,"epoch":0}"#).expect("decodes");
        assert_eq!(some.leader, Some(BrokerId(2)));
    }

    #[test]
    fn offsets_count() {
        assert_eq!(Offset(5).next(), Offset(6));
        assert_eq!(Offset(9).since(Offset(4)), 5);
        assert!(Offset(1) < Offset(2));
    }
}
