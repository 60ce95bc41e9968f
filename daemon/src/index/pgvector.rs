//! The pgvector backend of the vector index: the vectors of one library in a
//! PostgreSQL database with the pgvector extension, for libraries that live
//! past one machine (several daemons on one database, each its own library).
//!
//! Layout, all in the schema `mindory_<library>` (see
//! [`IndexConfig::library_name`](super::IndexConfig::library_name)):
//! - `v_<hash of the model id>` — `(key BIGINT PRIMARY KEY, embedding
//!   vector(D))` with an HNSW index (`vector_cosine_ops`, m = 16,
//!   ef_construction = 64). The table is named after the model so that a
//!   model swap builds the new model's table beside the one being searched.
//! - `meta` — one row (model, table, dimensions, store generation, count):
//!   what `index.meta.json` is to the usearch file. The next start trusts the
//!   table only when all of it matches the store; else it rebuilds from the
//!   stored vectors (COPY into a new table, index, rename in one
//!   transaction), exactly like a usearch file that disagrees.
//!
//! One daemon per library: a daemon holds a session-level advisory lock
//! keyed by its schema name on a connection of its own for as long as the
//! library is open, and a second daemon that finds the lock taken does not
//! start ([`IndexError::LibraryInUse`]). The server lets go of the lock
//! when that connection ends, so a daemon killed with `kill -9` does not
//! leave its library locked.
//!
//! Every apply is committed before it returns, so "ready means searchable"
//! holds as with usearch; `persist` only records the generation, since the
//! rows are already durable.
//!
//! Why tokio-postgres driven by a runtime of its own: the `VectorIndex` trait
//! is synchronous (its callers are blocking-pool threads), and the
//! synchronous `postgres` crate is the same client wrapped in a private
//! runtime per connection. One small runtime (one worker thread, which runs
//! the connections' I/O tasks) shared by a pool of connections costs one
//! thread in all; callers `block_on` it from their blocking threads, never
//! from an async one. Idle connections wait in a mutex-guarded list; a
//! connection that saw any error is dropped rather than reused.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use pgvector::Vector;
use sha2::Digest;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{IndexError, IndexOrigin, VectorIndex, KEYS_CHECKED_AT_START};
use crate::store::StoreReader;

/// Idle connections kept for reuse; more are opened under load and closed
/// when they come back to a full list.
const MAX_IDLE: usize = 8;

/// HNSW graph parameters: pgvector's defaults, which the bench measured
/// against exact search (BENCHMARKS.md, "pgvector").
const HNSW_M: u32 = 16;
const HNSW_EF_CONSTRUCTION: u32 = 64;

/// The smallest candidate list a search explores; larger `k` raise it to
/// `k`, up to pgvector's limit of 1000. pgvector's default, 40, gave
/// recall@10 0.966 on real MiniLM embeddings (4,000 passages among 50,000
/// vectors); 100 gave 0.990 and 200 0.995 (BENCHMARKS.md, "pgvector's
/// recall on real embeddings"). 128, like the usearch index's expansion.
const MIN_EF_SEARCH: usize = 128;

/// Rows per INSERT of an apply (each row is one vector).
const INSERT_BATCH: usize = 1000;

/// How long opening a library waits for its lock: a daemon that has just
/// stopped, or this daemon's own connection of a moment ago (an index
/// opened for another model at start), may still hold it while the server
/// notices the connection is gone.
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// A library in a PostgreSQL database: the connection settings, the schema
/// and a pool of connections. Shared by the active index and a swap's new one.
pub struct PgLibrary {
    /// Drives the connections; `None` only while dropping.
    runtime: Option<tokio::runtime::Runtime>,
    config: tokio_postgres::Config,
    /// TLS as the URL's `sslmode` and certificate keys ask (`pg_url`).
    tls: MakeRustlsConnect,
    /// The database for messages: the URL without its password.
    url: String,
    /// The schema holding this library's tables (a plain identifier).
    schema: String,
    idle: Mutex<Vec<Conn>>,
    /// The connection holding the library's advisory lock, never pooled;
    /// `None` only until `connect` has taken the lock.
    lock: Option<Client>,
}

/// A pooled connection and what it has set up.
struct Conn {
    client: Client,
    /// The session's `hnsw.ef_search`.
    ef_search: usize,
    /// Statements prepared on this connection, by SQL text.
    statements: HashMap<String, Statement>,
}

impl Conn {
    async fn statement(&mut self, sql: &str) -> Result<Statement, tokio_postgres::Error> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql).await?;
        self.statements.insert(sql.to_string(), s.clone());
        Ok(s)
    }
}

impl Drop for PgLibrary {
    fn drop(&mut self) {
        // The last handle may go away on an async thread (a swapped-out
        // index): a runtime dropped there would panic, so it is left to
        // finish in the background.
        self.idle.lock().clear();
        self.lock = None;
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// An error's message with its causes (tokio-postgres puts the useful part,
/// such as "No such file or directory", in the source).
fn chain(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} (SQLSTATE {})", db.message(), db.code().code());
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The table of `model`'s vectors: a hash, since model ids hold characters
/// identifiers do not.
fn table_for(model: &str) -> String {
    format!("v_{}", &hex::encode(sha2::Sha256::digest(model.as_bytes()))[..16])
}

impl PgLibrary {
    /// Connects to the database at `url` and makes sure it can hold the
    /// library `library`: the vector extension, the schema and its metadata
    /// table. Fails with a message naming the URL (without the password)
    /// when the database cannot be reached. Blocking.
    pub fn connect(url: &str, library: &str) -> Result<Self, IndexError> {
        let shown = super::pg_url::redact(url);
        if url.trim().is_empty() {
            return Err(IndexError::Unreachable {
                url: "(none)".into(),
                detail: "[index] backend is pgvector but no url is configured".into(),
            });
        }
        let unreadable = |detail: String| IndexError::Unreachable {
            url: shown.clone(),
            detail: format!("the URL cannot be read ({detail}); see docs/pgvector.md for its forms"),
        };
        let (rest, tls) = super::pg_url::split(url).map_err(unreadable)?;
        let mut config: tokio_postgres::Config = rest.parse().map_err(|e: tokio_postgres::Error| unreadable(e.to_string()))?;
        tls.apply(&mut config);
        let connector = tls.connector().map_err(|detail| IndexError::Unreachable {
            url: shown.clone(),
            detail,
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        if config.get_application_name().is_none() {
            config.application_name("mindoryd");
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("mindory-pg")
            .enable_all()
            .build()
            .map_err(|e| IndexError::Engine(format!("cannot start the PostgreSQL client's runtime: {e}")))?;
        let mut pg = PgLibrary {
            runtime: Some(runtime),
            config,
            tls: connector,
            url: shown,
            schema: format!("mindory_{library}"),
            idle: Mutex::new(Vec::new()),
            lock: None,
        };
        pg.lock = Some(pg.block_on(pg.take_lock(library))?);
        pg.block_on(pg.setup())?;
        Ok(pg)
    }

    /// Takes the library's advisory lock on a connection of its own and
    /// returns that connection, which holds the lock until it closes.
    ///
    /// A session lock needs one server session per client connection. A
    /// pooler in transaction mode (PgBouncer's `pool_mode = transaction`,
    /// the "pooled" connection strings of hosted databases) hands each
    /// statement whichever server session is free, so the lock would stay
    /// with a session other clients then use, and the pool's prepared
    /// statements would fail at random. That is checked here, before
    /// anything else runs: a second connection asks for the same lock, which
    /// a direct or session-pooled connection refuses, while a transaction
    /// pooler gives it the session that already holds the lock (it reuses
    /// the session it just released), where the lock is granted again.
    /// The queries use the simple protocol, which any pooler passes.
    async fn take_lock(&self, library: &str) -> Result<Client, IndexError> {
        let conn = self.take().await?;
        let try_lock = format!(
            "SELECT pg_try_advisory_lock(hashtextextended('{}', 0))",
            self.schema.replace('\'', "''")
        );
        let granted = async |client: &Client| -> Result<bool, IndexError> {
            let rows = client.simple_query(&try_lock).await.map_err(|e| self.error(&e))?;
            Ok(rows
                .iter()
                .any(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(row) if row.get(0) == Some("t"))))
        };
        let deadline = tokio::time::Instant::now() + LOCK_WAIT;
        while !granted(&conn.client).await? {
            if tokio::time::Instant::now() >= deadline {
                return Err(IndexError::LibraryInUse {
                    url: self.url.clone(),
                    library: library.to_string(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let probe = self.take().await?;
        if granted(&probe.client).await? {
            // The pooler's server session now holds the lock twice; let go
            // of it there, or the direct connection the message advises
            // would find the library locked until the pooler closes it.
            let _ = probe.client.simple_query("SELECT pg_advisory_unlock_all()").await;
            return Err(IndexError::Database {
                url: self.url.clone(),
                detail: "a connection pooler in transaction mode sits between Mindory and the database (the library's session lock was granted to a second connection): connect to PostgreSQL directly, or through a pooler in session mode (PgBouncer: pool_mode = session; hosted databases: the direct or session connection string)".into(),
            });
        }
        self.give(probe);
        Ok(conn.client)
    }

    /// The database, for messages (no password).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The schema this library's tables live in.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.as_ref().expect("dropped only once").block_on(future)
    }

    fn error(&self, e: &tokio_postgres::Error) -> IndexError {
        let detail = chain(e);
        let tls = detail.contains("TLS") || detail.contains("SSL");
        // The server refusing the login (SQLSTATE classes 08 and 28: a
        // wrong password, no pg_hba entry, a certificate it does not take)
        // is a connection that cannot be made, like a server that is down.
        let refused = e
            .as_db_error()
            .is_some_and(|db| matches!(db.code().code().get(..2), Some("08" | "28")));
        if refused || e.as_db_error().is_none() && (tls || e.is_closed() || detail.contains("connect") || detail.contains("communicating"))
        {
            IndexError::Unreachable {
                url: self.url.clone(),
                detail: if tls {
                    format!("{detail} (check sslmode and sslrootcert in the URL: docs/pgvector.md, \"TLS\")")
                } else {
                    detail
                },
            }
        } else {
            IndexError::Database {
                url: self.url.clone(),
                detail,
            }
        }
    }

    /// A connection: an idle one, or a new one.
    async fn take(&self) -> Result<Conn, IndexError> {
        loop {
            let Some(conn) = self.idle.lock().pop() else { break };
            if !conn.client.is_closed() {
                return Ok(conn);
            }
        }
        let (client, connection) = self.config.connect(self.tls.clone()).await.map_err(|e| self.error(&e))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "a PostgreSQL connection ended");
            }
        });
        // Filtered searches (a book filter) go on scanning the graph until
        // they have k rows (pgvector 0.8): without it an HNSW scan stops at
        // ef_search candidates and a filter can leave fewer than k.
        client
            .batch_execute(&format!(
                "SET hnsw.iterative_scan = relaxed_order; SET hnsw.ef_search = {MIN_EF_SEARCH}"
            ))
            .await
            .map_err(|e| self.error(&e))?;
        Ok(Conn {
            client,
            ef_search: MIN_EF_SEARCH,
            statements: HashMap::new(),
        })
    }

    /// Returns a connection that worked to the pool.
    fn give(&self, conn: Conn) {
        let mut idle = self.idle.lock();
        if idle.len() < MAX_IDLE && !conn.client.is_closed() {
            idle.push(conn);
        }
    }

    /// Runs `work` on a pooled connection; the connection goes back to the
    /// pool only if it succeeded.
    fn with_conn<T>(&self, work: impl AsyncFnOnce(&mut Conn) -> Result<T, tokio_postgres::Error>) -> Result<T, IndexError> {
        self.block_on(async {
            let mut conn = self.take().await?;
            match work(&mut conn).await {
                Ok(value) => {
                    self.give(conn);
                    Ok(value)
                }
                Err(e) => Err(self.error(&e)),
            }
        })
    }

    async fn setup(&self) -> Result<(), IndexError> {
        let conn = self.take().await?;
        let installed = conn
            .client
            .query_opt("SELECT extversion FROM pg_extension WHERE extname = 'vector'", &[])
            .await
            .map_err(|e| self.error(&e))?;
        if installed.is_none() {
            if let Err(e) = conn.client.batch_execute("CREATE EXTENSION IF NOT EXISTS vector").await {
                return Err(IndexError::Database {
                    url: self.url.clone(),
                    detail: format!(
                        "the vector extension is not installed in this database and this user cannot install it ({}); ask its administrator to run CREATE EXTENSION vector in it",
                        chain(&e)
                    ),
                });
            }
        }
        let schema = &self.schema;
        conn.client
            .batch_execute(&format!(
                "SET client_min_messages = warning;
                 CREATE SCHEMA IF NOT EXISTS \"{schema}\";
                 CREATE TABLE IF NOT EXISTS \"{schema}\".meta (
                     id int PRIMARY KEY CHECK (id = 1),
                     model text NOT NULL,
                     tbl text NOT NULL,
                     dimensions int NOT NULL,
                     generation bigint NOT NULL,
                     count bigint NOT NULL);
                 RESET client_min_messages"
            ))
            .await
            .map_err(|e| IndexError::Database {
                url: self.url.clone(),
                detail: format!(
                    "cannot create the schema {schema} for this library ({}); grant this user CREATE on the database, or create the schema for it",
                    chain(&e)
                ),
            })?;
        self.give(conn);
        Ok(())
    }

    /// Drops the tables of this library's schema other than `meta` and
    /// `keep`: another model's table left by a swap, a rebuild that died.
    fn drop_strays(&self, keep: &str) -> Result<(), IndexError> {
        let schema = self.schema.clone();
        let keep = keep.to_string();
        self.with_conn(async move |conn: &mut Conn| {
            let rows = conn
                .client
                .query("SELECT tablename FROM pg_tables WHERE schemaname = $1", &[&schema])
                .await?;
            for row in rows {
                let name: String = row.get(0);
                if name != "meta" && name != keep {
                    tracing::info!(table = %name, "dropping a vector table this library no longer uses");
                    conn.client
                        .batch_execute(&format!("DROP TABLE IF EXISTS \"{schema}\".\"{name}\""))
                        .await?;
                }
            }
            Ok(())
        })
    }
}

/// One model's vectors of a library, in PostgreSQL (see the module comment).
pub struct PgVectorIndex {
    library: Arc<PgLibrary>,
    /// The table (unqualified, a plain identifier).
    table: String,
    dimensions: usize,
    /// Rows in the table, kept from what each write reports, so that `len`
    /// answers from memory on async threads.
    count: AtomicUsize,
}

impl PgVectorIndex {
    /// An empty table for `model`'s vectors (replacing any left over), for
    /// a model swap to fill. Blocking.
    pub fn create(library: &Arc<PgLibrary>, model: &str, dimensions: usize) -> Result<Self, IndexError> {
        let index = Self::unopened(library, model, dimensions);
        index.replace_all(&[])?;
        Ok(index)
    }

    fn unopened(library: &Arc<PgLibrary>, model: &str, dimensions: usize) -> Self {
        PgVectorIndex {
            library: library.clone(),
            table: table_for(model),
            dimensions,
            count: AtomicUsize::new(0),
        }
    }

    /// `schema.table`, quoted.
    fn qualified(&self) -> String {
        format!("\"{}\".\"{}\"", self.library.schema, self.table)
    }
}

impl VectorIndex for PgVectorIndex {
    fn add(&self, key: u64, vector: &[f32]) -> Result<(), IndexError> {
        self.apply(&[], &[(key, vector.to_vec())])
    }

    fn remove(&self, key: u64) -> Result<(), IndexError> {
        self.apply(&[key], &[])
    }

    fn apply(&self, removed: &[u64], added: &[(u64, Vec<f32>)]) -> Result<(), IndexError> {
        if removed.is_empty() && added.is_empty() {
            return Ok(());
        }
        let table = self.qualified();
        let removed: Vec<i64> = removed.iter().map(|k| *k as i64).collect();
        // One row per key (the last vector wins): ON CONFLICT refuses to
        // touch a row twice in one statement.
        let added: Vec<(i64, Vector)> = added
            .iter()
            .map(|(k, v)| (*k as i64, v))
            .collect::<std::collections::BTreeMap<_, _>>()
            .into_iter()
            .map(|(k, v)| (k, Vector::from(v.clone())))
            .collect();
        let (deleted, inserted) = self.library.with_conn(async move |conn: &mut Conn| {
            let delete = format!("DELETE FROM {table} WHERE key = ANY($1)");
            let insert = format!(
                "INSERT INTO {table} (key, embedding) SELECT * FROM unnest($1::bigint[], $2::vector[]) \
                     ON CONFLICT (key) DO UPDATE SET embedding = EXCLUDED.embedding RETURNING (xmax = 0)"
            );
            let delete = if removed.is_empty() {
                None
            } else {
                Some(conn.statement(&delete).await?)
            };
            let insert = if added.is_empty() {
                None
            } else {
                Some(conn.statement(&insert).await?)
            };
            let tx = conn.client.transaction().await?;
            let mut deleted = 0u64;
            if let Some(delete) = delete {
                deleted = tx.execute(&delete, &[&removed]).await?;
            }
            let mut inserted = 0u64;
            if let Some(insert) = insert {
                for batch in added.chunks(INSERT_BATCH) {
                    let keys: Vec<i64> = batch.iter().map(|(k, _)| *k).collect();
                    let vectors: Vec<&Vector> = batch.iter().map(|(_, v)| v).collect();
                    let rows = tx.query(&insert, &[&keys, &vectors]).await?;
                    inserted += rows.iter().filter(|r| r.get::<_, bool>(0)).count() as u64;
                }
            }
            tx.commit().await?;
            Ok((deleted, inserted))
        })?;
        let now = (self.count.load(Ordering::SeqCst) as u64 + inserted).saturating_sub(deleted);
        self.count.store(now as usize, Ordering::SeqCst);
        Ok(())
    }

    fn search(&self, query: &[f32], k: usize, books: Option<&[u64]>) -> Result<Vec<(u64, f32)>, IndexError> {
        if k == 0 {
            return Ok(Vec::new());
        }
        let table = self.qualified();
        let query = Vector::from(query.to_vec());
        let books: Option<Vec<i64>> = books.filter(|b| !b.is_empty()).map(|b| b.iter().map(|x| *x as i64).collect());
        let ef = k.clamp(MIN_EF_SEARCH, 1000);
        let limit = k as i64;
        let mut hits: Vec<(u64, f32)> = self.library.with_conn(async move |conn: &mut Conn| {
            if conn.ef_search != ef {
                conn.client.batch_execute(&format!("SET hnsw.ef_search = {ef}")).await?;
                conn.ef_search = ef;
            }
            let rows = match &books {
                Some(books) => {
                    let sql =
                        format!("SELECT key, embedding <=> $1 FROM {table} WHERE (key >> 24) = ANY($2) ORDER BY embedding <=> $1 LIMIT $3");
                    let statement = conn.statement(&sql).await?;
                    conn.client.query(&statement, &[&query, books, &limit]).await?
                }
                None => {
                    let sql = format!("SELECT key, embedding <=> $1 FROM {table} ORDER BY embedding <=> $1 LIMIT $2");
                    let statement = conn.statement(&sql).await?;
                    conn.client.query(&statement, &[&query, &limit]).await?
                }
            };
            Ok(rows
                .iter()
                .map(|r| (r.get::<_, i64>(0) as u64, 1.0 - r.get::<_, f64>(1) as f32))
                .collect())
        })?;
        // An iterative scan in relaxed order may return rows slightly out
        // of order; callers expect best first.
        hits.sort_by(|a, b| b.1.total_cmp(&a.1));
        Ok(hits)
    }

    fn contains(&self, key: u64) -> bool {
        let sql = format!("SELECT EXISTS (SELECT 1 FROM {} WHERE key = $1)", self.qualified());
        self.library
            .with_conn(async move |conn: &mut Conn| {
                let row = conn.client.query_one(&sql, &[&(key as i64)]).await?;
                Ok(row.get::<_, bool>(0))
            })
            .unwrap_or(false)
    }

    fn len(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    fn persist(&self, model: &str, generation: u64) -> Result<(), IndexError> {
        let sql = format!(
            "INSERT INTO \"{}\".meta (id, model, tbl, dimensions, generation, count) VALUES (1, $1, $2, $3, $4, $5) \
             ON CONFLICT (id) DO UPDATE SET model = $1, tbl = $2, dimensions = $3, generation = $4, count = $5",
            self.library.schema
        );
        let (model, table) = (model.to_string(), self.table.clone());
        let (dimensions, generation, count) = (self.dimensions as i32, generation as i64, self.len() as i64);
        self.library.with_conn(async move |conn: &mut Conn| {
            conn.client
                .execute(&sql, &[&model, &table, &dimensions, &generation, &count])
                .await?;
            Ok(())
        })
    }

    fn replace_all(&self, vectors: &[(u64, Vec<f32>)]) -> Result<(), IndexError> {
        let schema = self.library.schema.clone();
        let (table, fresh) = (self.table.clone(), format!("{}_new", self.table));
        let dimensions = self.dimensions;
        let count = vectors.len();
        self.library.with_conn(async move |conn: &mut Conn| {
            let client = &mut conn.client;
            client
                .batch_execute(&format!(
                    "SET client_min_messages = warning;
                         DROP TABLE IF EXISTS \"{schema}\".\"{fresh}\";
                         CREATE TABLE \"{schema}\".\"{fresh}\" (key bigint NOT NULL, embedding vector({dimensions}) NOT NULL);
                         RESET client_min_messages"
                ))
                .await?;
            // COPY in binary, then the keys' index and the graph: both
            // build faster over a full table than row by row.
            let vector_type = client.prepare("SELECT $1::vector").await?.params()[0].clone();
            let sink = client
                .copy_in(&format!(
                    "COPY \"{schema}\".\"{fresh}\" (key, embedding) FROM STDIN (FORMAT binary)"
                ))
                .await?;
            let writer = BinaryCopyInWriter::new(sink, &[Type::INT8, vector_type]);
            let mut writer = std::pin::pin!(writer);
            for (key, vector) in vectors {
                let vector = Vector::from(vector.clone());
                writer.as_mut().write(&[&(*key as i64), &vector]).await?;
            }
            writer.finish().await?;
            // The graph of 100k 384-dimensional vectors needs ~200 MB;
            // with less, pgvector builds it far more slowly.
            client
                .batch_execute(&format!(
                    "SET maintenance_work_mem = '512MB';
                         ALTER TABLE \"{schema}\".\"{fresh}\" ADD CONSTRAINT \"{fresh}_pkey\" PRIMARY KEY (key);
                         CREATE INDEX \"{fresh}_hnsw\" ON \"{schema}\".\"{fresh}\" USING hnsw (embedding vector_cosine_ops)
                             WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION});
                         RESET maintenance_work_mem"
                ))
                .await?;
            // The swap: searches see the old table or the new one,
            // never a half-built one.
            client
                .batch_execute(&format!(
                    "BEGIN;
                         DROP TABLE IF EXISTS \"{schema}\".\"{table}\";
                         ALTER TABLE \"{schema}\".\"{fresh}\" RENAME TO \"{table}\";
                         ALTER INDEX \"{schema}\".\"{fresh}_pkey\" RENAME TO \"{table}_pkey\";
                         ALTER INDEX \"{schema}\".\"{fresh}_hnsw\" RENAME TO \"{table}_hnsw\";
                         COMMIT"
                ))
                .await?;
            Ok(())
        })?;
        self.count.store(count, Ordering::SeqCst);
        Ok(())
    }
}

/// Opens the library's table of `model` if it matches the store, else
/// rebuilds it from the stored vectors. Blocking.
pub(crate) fn open_or_rebuild(
    library: &Arc<PgLibrary>,
    store: &StoreReader,
    model: &str,
    dimensions: usize,
) -> Result<(PgVectorIndex, u64, IndexOrigin), IndexError> {
    let generation = store.generation()?;
    let (_, _, stored) = store.counts()?;
    let index = PgVectorIndex::unopened(library, model, dimensions);
    let origin = match check_saved(&index, store, model, generation, stored)? {
        Ok(()) => IndexOrigin::Loaded,
        Err(reason) => {
            tracing::warn!(%reason, schema = %library.schema, "rebuilding the vector index in PostgreSQL from stored vectors");
            let vectors = store.vectors_of_model(model)?;
            index.replace_all(&vectors)?;
            index.persist(model, generation)?;
            IndexOrigin::Rebuilt(reason)
        }
    };
    library.drop_strays(&index.table)?;
    Ok((index, generation, origin))
}

/// What the saved table disagrees with the store about (`Ok(Err(reason))`),
/// or `Ok(Ok(()))` with the index's count set; `Err` when the database fails.
fn check_saved(
    index: &PgVectorIndex,
    store: &StoreReader,
    model: &str,
    generation: u64,
    stored: u64,
) -> Result<Result<(), String>, IndexError> {
    let library = &index.library;
    let schema = library.schema.clone();
    let meta = library.with_conn(async move |conn: &mut Conn| {
        let row = conn
            .client
            .query_opt(
                &format!("SELECT model, tbl, dimensions, generation, count FROM \"{schema}\".meta WHERE id = 1"),
                &[],
            )
            .await?;
        Ok(row.map(|r| {
            (
                r.get::<_, String>(0),
                r.get::<_, String>(1),
                r.get::<_, i32>(2),
                r.get::<_, i64>(3),
                r.get::<_, i64>(4),
            )
        }))
    })?;
    let Some((saved_model, table, dimensions, saved_generation, count)) = meta else {
        return Ok(Err(format!("no saved index in schema {}", library.schema)));
    };
    if saved_model != model {
        return Ok(Err(format!("index was built with model {saved_model}, the store uses {model}")));
    }
    if table != index.table || dimensions as usize != index.dimensions {
        return Ok(Err(format!("index table {table} of {dimensions} dimensions is not this build's")));
    }
    if saved_generation as u64 != generation {
        return Ok(Err(format!(
            "index is from store generation {saved_generation}, the store is at {generation}"
        )));
    }
    let keys: Vec<i64> = store
        .vector_key_sample(KEYS_CHECKED_AT_START)?
        .into_iter()
        .map(|k| k as i64)
        .collect();
    let sampled = keys.len() as i64;
    let qualified = index.qualified();
    let found = library.with_conn(async move |conn: &mut Conn| {
        let exists = conn
            .client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&qualified])
            .await?
            .get::<_, bool>(0);
        if !exists {
            return Ok(None);
        }
        let rows = conn
            .client
            .query_one(&format!("SELECT count(*) FROM {qualified}"), &[])
            .await?
            .get::<_, i64>(0);
        let present = conn
            .client
            .query_one(&format!("SELECT count(*) FROM {qualified} WHERE key = ANY($1)"), &[&keys])
            .await?
            .get::<_, i64>(0);
        Ok(Some((rows, present)))
    })?;
    let Some((rows, present)) = found else {
        return Ok(Err(format!("the table {} is missing", index.qualified())));
    };
    if rows as u64 != stored || count as u64 != stored {
        return Ok(Err(format!("index holds {rows} vectors, the store {stored}")));
    }
    if present != sampled {
        return Ok(Err(format!(
            "{} of {sampled} stored vectors looked up are missing from the index",
            sampled - present
        )));
    }
    index.count.store(rows as usize, Ordering::SeqCst);
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_tables_are_identifiers() {
        let t = table_for("sentence-transformers/all-MiniLM-L6-v2");
        assert!(t.len() == 18 && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'), "{t}");
        assert_ne!(t, table_for("minishlab/potion-base-8M"));
    }

    #[test]
    fn an_unreachable_database_is_named_without_its_password() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("host={} user=u password=hunter2 dbname=x", dir.path().display());
        let e = PgLibrary::connect(&url, "t").err().expect("nothing listens there").to_string();
        assert!(e.contains("cannot connect to PostgreSQL") && e.contains("password=***"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        assert!(e.contains("backend = \"usearch\""), "{e}");
    }
}
