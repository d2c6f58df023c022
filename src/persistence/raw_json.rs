//! [`RawJson`] as a column value: its text goes to Postgres `jsonb` and SQLite's JSON text
//! columns as it is, and comes back as text, with no `Value` built on the way (a `Value` binds
//! through a second serialisation of the whole document, and reads back as a tree several
//! times the text's size).

use std::io::Write;

use diesel::backend::Backend;
use diesel::deserialize::{self, FromSql};
use diesel::pg::Pg;
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types::{Json, Jsonb};
use diesel::sqlite::Sqlite;

use crate::model::RawJson;

impl ToSql<Jsonb, Pg> for RawJson {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        // jsonb's binary format: a version byte, then the JSON text
        out.write_all(&[1])?;
        out.write_all(self.get().as_bytes())?;
        Ok(IsNull::No)
    }
}

impl ToSql<Json, Sqlite> for RawJson {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        out.set_value(self.get());
        Ok(IsNull::No)
    }
}

impl FromSql<Jsonb, Pg> for RawJson {
    fn from_sql(value: <Pg as Backend>::RawValue<'_>) -> deserialize::Result<Self> {
        match value.as_bytes().split_first() {
            Some((1, text)) => Ok(RawJson::from_text(std::str::from_utf8(text)?.to_owned())?),
            _ => Err("unsupported jsonb encoding".into()),
        }
    }
}

impl FromSql<Json, Sqlite> for RawJson {
    fn from_sql(value: <Sqlite as Backend>::RawValue<'_>) -> deserialize::Result<Self> {
        let text = <String as FromSql<diesel::sql_types::Text, Sqlite>>::from_sql(value)?;
        Ok(RawJson::from_text(text)?)
    }
}
