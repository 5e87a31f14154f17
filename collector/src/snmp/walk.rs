//! Walking table columns: GETBULK over all columns at once (v2c, v3), or GETNEXT column
//! by column (v1). `snmp2` has no walk of its own.
use std::{collections::BTreeMap, sync::Arc};

use super::{
    error::{Agent, SnmpError},
    oids::dotted,
    session::{Request, Session, SnmpValue, Varbind},
};

/// Rows asked for per column and request; halved when the agent answers tooBig.
const MAX_REPETITIONS: u32 = 10;
/// More rows than this in one column is a broken or hostile agent.
const MAX_ROWS: usize = 100_000;
/// error-status tooBig.
const TOO_BIG: u32 = 1;
/// error-status noSuchName: how a v1 agent says a GETNEXT ran off the end of the MIB.
const NO_SUCH_NAME: u32 = 2;

/// One row of a column: the index after the column's OID, and the value.
pub type Row = (Vec<u64>, SnmpValue);

/// Walks every column in `columns` to its end and returns their rows, in column order.
pub async fn walk_columns(
    session: &mut Session,
    columns: &[&[u64]],
) -> Result<Vec<Vec<Row>>, SnmpError> {
    walk_to_end(session, Walk::new(columns)).await
}

/// Walks every column in `columns` until its end or its first `rows` rows, whichever comes
/// first: a bounded read of tables that may be larger than what is kept of them.
pub async fn walk_columns_up_to(
    session: &mut Session,
    columns: &[&[u64]],
    rows: usize,
) -> Result<Vec<Vec<Row>>, SnmpError> {
    let mut walk = Walk::new(columns);
    walk.stop_at = Some(rows);
    walk_to_end(session, walk).await
}

async fn walk_to_end(
    session: &mut Session,
    mut walk: Walk<'_>,
) -> Result<Vec<Vec<Row>>, SnmpError> {
    let mut max_repetitions = MAX_REPETITIONS;
    while !walk.active().is_empty() {
        let active = walk.active();
        if session.has_bulk() {
            let cursors: Vec<&[u64]> = active.iter().map(|&c| walk.cursor(c)).collect();
            let request = Request::GetBulk {
                oids: &cursors,
                max_repetitions,
            };
            let response = session.request(request).await?;
            if response.error_status == TOO_BIG && max_repetitions > 1 {
                max_repetitions /= 2;
                continue;
            }
            check_status(
                session,
                request,
                response.error_status,
                response.error_index,
            )?;
            if response.varbinds.is_empty() {
                return Err(SnmpError::EmptyResponse {
                    agent: session.agent().clone(),
                    request: request.name(),
                    oid: request.first_oid(),
                });
            }
            walk.accept_bulk(session.agent(), &active, response.varbinds)?;
        } else {
            for column in active {
                let cursor = walk.cursor(column).to_vec();
                let request = Request::GetNext(&cursor);
                let response = session.request(request).await?;
                if response.error_status == NO_SUCH_NAME {
                    walk.finish(column);
                    continue;
                }
                check_status(
                    session,
                    request,
                    response.error_status,
                    response.error_index,
                )?;
                let Some(varbind) = response.varbinds.into_iter().next() else {
                    return Err(SnmpError::EmptyResponse {
                        agent: session.agent().clone(),
                        request: request.name(),
                        oid: request.first_oid(),
                    });
                };
                walk.accept(session.agent(), column, varbind)?;
            }
        }
    }
    Ok(walk.rows)
}

/// The values of each ifIndex (any single-arc index up to 2³²) across `columns`:
/// `values[c]` is column c's value. Rows with another index are left out.
pub(crate) fn index_columns(columns: &[Vec<Row>]) -> BTreeMap<u32, Vec<Option<&SnmpValue>>> {
    let mut by_index: BTreeMap<u32, Vec<Option<&SnmpValue>>> = BTreeMap::new();
    for (c, rows) in columns.iter().enumerate() {
        for (index, value) in rows {
            // IF-MIB tables have a single index, ifIndex (1..2147483647).
            let [if_index] = index.as_slice() else {
                continue;
            };
            let Ok(if_index) = u32::try_from(*if_index) else {
                continue;
            };
            by_index
                .entry(if_index)
                .or_insert_with(|| vec![None; columns.len()])[c] = Some(value);
        }
    }
    by_index
}

fn check_status(
    session: &Session,
    request: Request<'_>,
    status: u32,
    index: u32,
) -> Result<(), SnmpError> {
    if status == 0 {
        return Ok(());
    }
    Err(SnmpError::ErrorStatus {
        agent: session.agent().clone(),
        request: request.name(),
        oid: request.first_oid(),
        status,
        index,
    })
}

/// Progress of a walk: per column its OID, where it is, and what it found.
struct Walk<'a> {
    columns: &'a [&'a [u64]],
    /// Last OID returned per column; `None` once the column ended.
    cursors: Vec<Option<Vec<u64>>>,
    rows: Vec<Vec<Row>>,
    /// Rows after which a column counts as ended (else [`MAX_ROWS`] is an error).
    stop_at: Option<usize>,
}

impl<'a> Walk<'a> {
    fn new(columns: &'a [&'a [u64]]) -> Self {
        Self {
            columns,
            cursors: columns.iter().map(|c| Some(c.to_vec())).collect(),
            rows: vec![Vec::new(); columns.len()],
            stop_at: None,
        }
    }

    fn active(&self) -> Vec<usize> {
        (0..self.cursors.len())
            .filter(|&c| self.cursors[c].is_some())
            .collect()
    }

    fn cursor(&self, column: usize) -> &[u64] {
        self.cursors[column]
            .as_deref()
            .unwrap_or(self.columns[column])
    }

    fn finish(&mut self, column: usize) {
        self.cursors[column] = None;
    }

    /// Takes the varbinds of a GETBULK over the `active` columns. They come row-major:
    /// repetition r holds one varbind per requested column, in request order.
    fn accept_bulk(
        &mut self,
        agent: &Arc<Agent>,
        active: &[usize],
        varbinds: Vec<Varbind>,
    ) -> Result<(), SnmpError> {
        for (i, varbind) in varbinds.into_iter().enumerate() {
            self.accept(agent, active[i % active.len()], varbind)?;
        }
        Ok(())
    }

    /// Takes one varbind returned for `column`: a row, or the end of the column.
    fn accept(
        &mut self,
        agent: &Arc<Agent>,
        column: usize,
        varbind: Varbind,
    ) -> Result<(), SnmpError> {
        let prefix = self.columns[column];
        let Some(cursor) = &self.cursors[column] else {
            // Ended earlier in this response; GETBULK keeps repeating past the end.
            return Ok(());
        };
        let inside = varbind.oid.len() > prefix.len() && varbind.oid.starts_with(prefix);
        if varbind.value == SnmpValue::EndOfMibView || !inside {
            self.finish(column);
            return Ok(());
        }
        if varbind.oid <= *cursor {
            return Err(SnmpError::NotIncreasing {
                agent: agent.clone(),
                column: dotted(prefix),
                oid: dotted(&varbind.oid),
                previous: dotted(cursor),
            });
        }
        if self
            .stop_at
            .is_some_and(|stop| self.rows[column].len() >= stop)
        {
            self.finish(column);
            return Ok(());
        }
        if self.rows[column].len() >= MAX_ROWS {
            return Err(SnmpError::TooManyRows {
                agent: agent.clone(),
                column: dotted(prefix),
                limit: MAX_ROWS,
            });
        }
        let index = varbind.oid[prefix.len()..].to_vec();
        self.rows[column].push((index, varbind.value));
        self.cursors[column] = Some(varbind.oid);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &[u64] = &[1, 3, 6, 1, 2, 1, 2, 2, 1, 2];
    const B: &[u64] = &[1, 3, 6, 1, 2, 1, 2, 2, 1, 8];

    fn agent() -> Arc<Agent> {
        Arc::new(Agent {
            name: "device sw1".into(),
            address: "192.0.2.1".into(),
            port: 161,
        })
    }

    fn vb(column: &[u64], index: u64, value: SnmpValue) -> Varbind {
        let mut oid = column.to_vec();
        oid.push(index);
        Varbind { oid, value }
    }

    #[test]
    fn bulk_varbinds_are_taken_row_major_and_columns_end_on_leaving_the_subtree() {
        let columns = [A, B];
        let mut walk = Walk::new(&columns);
        let first = vec![
            vb(A, 1, SnmpValue::OctetString(b"lo".to_vec())),
            vb(B, 1, SnmpValue::Integer(1)),
            vb(A, 2, SnmpValue::OctetString(b"eth0".to_vec())),
            vb(B, 2, SnmpValue::Integer(2)),
            // Column A ran into column B's first row: A is done.
            vb(B, 1, SnmpValue::Integer(1)),
            vb(B, 3, SnmpValue::Integer(1)),
        ];
        walk.accept_bulk(&agent(), &[0, 1], first).expect("accept");
        assert_eq!(walk.active(), vec![1]);
        assert_eq!(walk.cursor(1), [B, &[3]].concat());
        // The next request covers B alone; the agent runs off the end of the MIB.
        let second = vec![
            vb(B, 4, SnmpValue::Integer(2)),
            Varbind {
                oid: vec![1, 3, 6, 1, 6],
                value: SnmpValue::EndOfMibView,
            },
        ];
        walk.accept_bulk(&agent(), &[1], second).expect("accept");
        assert!(walk.active().is_empty());
        let indexes = |c: usize| walk.rows[c].iter().map(|(i, _)| i[0]).collect::<Vec<_>>();
        assert_eq!(indexes(0), vec![1, 2]);
        assert_eq!(indexes(1), vec![1, 2, 3, 4]);
        assert_eq!(walk.rows[0][1].1, SnmpValue::OctetString(b"eth0".to_vec()));
    }

    #[test]
    fn an_agent_that_does_not_move_forward_is_refused() {
        let columns = [A];
        let mut walk = Walk::new(&columns);
        walk.accept(&agent(), 0, vb(A, 5, SnmpValue::Integer(1)))
            .expect("row");
        let error = walk
            .accept(&agent(), 0, vb(A, 5, SnmpValue::Integer(1)))
            .expect_err("repeated OID");
        assert!(matches!(error, SnmpError::NotIncreasing { .. }), "{error}");
        assert!(
            error.to_string().contains("1.3.6.1.2.1.2.2.1.2.5"),
            "{error}"
        );
    }

    #[test]
    fn varbinds_beyond_a_finished_column_are_ignored() {
        let columns = [A];
        let mut walk = Walk::new(&columns);
        walk.accept(&agent(), 0, vb(B, 1, SnmpValue::Integer(1)))
            .expect("end");
        walk.accept(&agent(), 0, vb(A, 9, SnmpValue::Integer(1)))
            .expect("ignored");
        assert!(walk.rows[0].is_empty());
    }

    #[test]
    fn a_bounded_walk_ends_a_column_at_its_bound() {
        let columns = [A, B];
        let mut walk = Walk::new(&columns);
        walk.stop_at = Some(2);
        let varbinds = (1..=3)
            .flat_map(|i| {
                [
                    vb(A, i, SnmpValue::Integer(1)),
                    vb(B, i, SnmpValue::Integer(2)),
                ]
            })
            .collect();
        walk.accept_bulk(&agent(), &[0, 1], varbinds)
            .expect("accept");
        assert!(walk.active().is_empty());
        assert_eq!((walk.rows[0].len(), walk.rows[1].len()), (2, 2));
    }

    #[test]
    fn an_oid_that_could_not_be_decoded_ends_the_column() {
        let columns = [A];
        let mut walk = Walk::new(&columns);
        let broken = Varbind {
            oid: Vec::new(),
            value: SnmpValue::Integer(1),
        };
        walk.accept(&agent(), 0, broken).expect("end");
        assert!(walk.active().is_empty());
    }
}
