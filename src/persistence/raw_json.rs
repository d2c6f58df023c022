//! [`RawJson`] as a bind parameter: its text goes to Postgres `jsonb` and SQLite's JSON text
//! columns as it is, with no `Value` built on the way (a `Value` binds through a second
//! serialisation of the whole document).

use std::io::Write;

use diesel::expression::AsExpression;
use diesel::pg::Pg;
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types::{Json, Jsonb};
use diesel::sqlite::Sqlite;

use crate::model::RawJson;

/// The text of a [`RawJson`], bound as a JSON column's value.
#[derive(Debug, AsExpression)]
#[diesel(sql_type = Jsonb)]
#[diesel(sql_type = Json)]
pub struct JsonText<'a>(pub &'a str);

impl<'a> From<&'a RawJson> for JsonText<'a> {
    fn from(raw: &'a RawJson) -> Self {
        JsonText(raw.get())
    }
}

impl ToSql<Jsonb, Pg> for JsonText<'_> {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        // jsonb's binary format: a version byte, then the JSON text
        out.write_all(&[1])?;
        out.write_all(self.0.as_bytes())?;
        Ok(IsNull::No)
    }
}

impl ToSql<Json, Sqlite> for JsonText<'_> {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        out.set_value(self.0);
        Ok(IsNull::No)
    }
}
