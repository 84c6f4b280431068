//! The commit path against a real SQLite catalog and real files.

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};

use super::IcebergEngine;
use crate::command::{TableName, WriteMode};

fn batch(start: i64, rows: i64, with_note: bool) -> RecordBatch {
    let mut fields = vec![Field::new("id", DataType::Int64, true)];
    let mut columns: Vec<Arc<dyn arrow::array::Array>> =
        vec![Arc::new(Int64Array::from_iter_values(start..start + rows))];
    if with_note {
        fields.push(Field::new("note", DataType::Utf8, true));
        columns.push(Arc::new(StringArray::from_iter_values(
            (0..rows).map(|i| format!("n{i}")),
        )));
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
}

/// A snapshot's live data files, read from its manifests.
async fn data_files(
    table: &super::LoadedTable,
    snapshot: &iceberg::spec::SnapshotRef,
) -> Vec<String> {
    super::SnapshotFiles::load(table, snapshot)
        .await
        .unwrap()
        .paths
}

async fn engine(dir: &tempfile::TempDir) -> IcebergEngine {
    IcebergEngine::open(
        super::CatalogDb::Sqlite(dir.path().join("catalog.db")),
        crate::storage::Storage::local(&dir.path().join("iceberg")),
        &dir.path().join("iceberg"),
        super::PlanCache::new(16, 1 << 20),
    )
    .await
    .unwrap()
}

async fn put(engine: &IcebergEngine, name: &TableName, mode: WriteMode, data: &RecordBatch) -> i64 {
    let mut write = engine
        .begin_write(name, mode, &data.schema(), None)
        .await
        .unwrap();
    write.write(data).await.unwrap();
    engine.commit(write).await.unwrap().snapshot_id
}

/// `s.t` after `n` appends of 10 rows each: ids 0..10n, one data file each.
async fn appended(engine: &IcebergEngine, n: i64) -> TableName {
    let name = TableName::parse("s.t").unwrap();
    for i in 0..n {
        put(engine, &name, WriteMode::Append, &batch(i * 10, 10, true)).await;
    }
    name
}

fn total_records(engine_table: &super::LoadedTable) -> String {
    engine_table
        .metadata()
        .current_snapshot()
        .unwrap()
        .summary()
        .additional_properties["total-records"]
        .clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_begun_together_both_land() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(&dir).await;
    let name = TableName::parse("s.t").unwrap();
    put(&engine, &name, WriteMode::Append, &batch(0, 10, true)).await;

    // A second engine on the same catalog stands for another process: its commit
    // races on the catalog's compare-and-swap instead of waiting its turn.
    let other = self::engine(&dir).await;
    let data = batch(100, 5, true);
    let mut a = engine
        .begin_write(&name, WriteMode::Append, &data.schema(), None)
        .await
        .unwrap();
    let mut b = other
        .begin_write(&name, WriteMode::Append, &data.schema(), None)
        .await
        .unwrap();
    a.write(&data).await.unwrap();
    b.write(&data).await.unwrap();
    let (ra, rb) = tokio::join!(engine.commit(a), other.commit(b));
    ra.unwrap();
    rb.unwrap();

    let table = engine.load(&name).await.unwrap().unwrap();
    assert_eq!(table.metadata().snapshots().count(), 3);
    assert_eq!(total_records(&table), "20");
}

#[tokio::test(flavor = "multi_thread")]
async fn overwrite_replaces_data_and_schema_but_keeps_history() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(&dir).await;
    let name = TableName::parse("s.t").unwrap();
    let first = put(&engine, &name, WriteMode::Append, &batch(0, 10, true)).await;
    put(&engine, &name, WriteMode::Overwrite, &batch(0, 3, false)).await;

    let table = engine.load(&name).await.unwrap().unwrap();
    let metadata = table.metadata();
    assert_eq!(metadata.current_schema().as_struct().fields().len(), 1);
    assert!(
        metadata.current_schema().field_by_name("id").unwrap().id > 2,
        "new columns get fresh ids"
    );
    assert_eq!(total_records(&table), "3");
    let old = table.snapshot(Some(first), None).unwrap().unwrap();
    assert_eq!(data_files(&table, &old).await.len(), 1);
    let current = table.snapshot(None, None).unwrap().unwrap();
    assert_eq!(current.summary().operation.as_str(), "overwrite");
    assert_eq!(data_files(&table, &current).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn aborted_and_refused_writes_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(&dir).await;
    let name = TableName::parse("s.t").unwrap();
    put(&engine, &name, WriteMode::Append, &batch(0, 10, true)).await;
    let files = || {
        walk(&dir.path().join("iceberg"))
            .into_iter()
            .filter(|p| p.ends_with(".parquet"))
            .count()
    };
    assert_eq!(files(), 1);

    let mut write = engine
        .begin_write(&name, WriteMode::Append, &batch(0, 1, true).schema(), None)
        .await
        .unwrap();
    write.write(&batch(0, 1000, true)).await.unwrap();
    write.abort().await;
    assert_eq!(files(), 1);

    let err = engine
        .begin_write(&name, WriteMode::Append, &batch(0, 1, false).schema(), None)
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("`note` is missing"), "{err}");
    let err = engine
        .begin_write(&name, WriteMode::Create, &batch(0, 1, true).schema(), None)
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("already exists"), "{err}");
    assert_eq!(
        engine
            .load(&name)
            .await
            .unwrap()
            .unwrap()
            .metadata()
            .snapshots()
            .count(),
        1
    );
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path.display().to_string());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn first_uploads_into_a_new_namespace_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(engine(&dir).await);
    let uploads = (0..6).map(|i| {
        let engine = engine.clone();
        tokio::spawn(async move {
            let name = TableName::parse(&format!("fresh.t{i}")).unwrap();
            put(&engine, &name, WriteMode::Overwrite, &batch(0, 10, false)).await
        })
    });
    for upload in futures::future::join_all(uploads).await {
        upload.expect("every upload commits");
    }
    assert_eq!(engine.list().await.unwrap().len(), 6);
}

#[tokio::test(flavor = "multi_thread")]
async fn many_appends_keep_few_manifests_and_every_file() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(&dir).await;
    let name = appended(&engine, 40).await;
    let table = engine.load(&name).await.unwrap().unwrap();
    let current = table.metadata().current_snapshot().unwrap().clone();
    let manifests = table.manifests(&current).await.unwrap().len();
    assert!(manifests < 16, "{manifests} manifests after 40 appends");
    assert_eq!(data_files(&table, &current).await.len(), 40);
    assert_eq!(total_records(&table), "400");
    // Earlier snapshots still list exactly their own files.
    let tenth = table
        .metadata()
        .snapshots()
        .find(|s| s.sequence_number() == 10);
    assert_eq!(data_files(&table, tenth.unwrap()).await.len(), 10);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_big_upload_is_encoded_on_every_core() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(&dir).await;
    let name = TableName::parse("s.big").unwrap();
    let data = batch(0, 500_000, true); // ~12 MiB of Arrow data per batch
    let mut write = engine
        .begin_write(&name, WriteMode::Append, &data.schema(), None)
        .await
        .unwrap();
    for _ in 0..8 {
        write.write(&data).await.unwrap();
    }
    engine.commit(write).await.unwrap();
    let table = engine.load(&name).await.unwrap().unwrap();
    let current = table.metadata().current_snapshot().unwrap().clone();
    let cores = std::thread::available_parallelism().unwrap().get();
    assert_eq!(total_records(&table), "4000000");
    assert!(data_files(&table, &current).await.len() >= cores.min(4));
}

/// Every id in the table's current data files, sorted.
async fn ids(engine: &IcebergEngine, name: &TableName) -> Vec<i64> {
    let table = engine.load(name).await.unwrap().unwrap();
    let current = table.metadata().current_snapshot().unwrap().clone();
    let mut ids = Vec::new();
    for path in data_files(&table, &current).await {
        let file = std::fs::File::open(super::local_path(&path)).unwrap();
        let reader =
            parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(file, 1024).unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let column = batch.column_by_name("id").unwrap();
            let column = column.as_any().downcast_ref::<Int64Array>().unwrap();
            ids.extend(column.values().iter().copied());
        }
    }
    ids.sort_unstable();
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn compaction_rewrites_small_files_and_keeps_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(&dir).await;
    let name = appended(&engine, 40).await;
    assert!(
        engine.compact(&name, 50).await.unwrap().is_none(),
        "below the threshold"
    );

    let compacted = engine.compact(&name, 32).await.unwrap().unwrap();
    assert_eq!(compacted.rows, 400);
    assert_eq!(compacted.table_data_files, 1);
    assert_eq!(ids(&engine, &name).await, (0..400).collect::<Vec<_>>());
    let table = engine.load(&name).await.unwrap().unwrap();
    assert_eq!(total_records(&table), "400");
    let current = table.metadata().current_snapshot().unwrap();
    assert_eq!(current.summary().operation.as_str(), "replace");
    // The snapshot before it still reads its own 40 files.
    let before = table
        .metadata()
        .snapshot_by_id(current.parent_snapshot_id().unwrap());
    assert_eq!(data_files(&table, before.unwrap()).await.len(), 40);

    // Appends after a compaction land next to the compacted file.
    put(&engine, &name, WriteMode::Append, &batch(400, 10, true)).await;
    assert_eq!(ids(&engine, &name).await, (0..410).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_compaction_overtaken_by_an_overwrite_commits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(&dir).await;
    let name = appended(&engine, 4).await;
    let table = engine.load(&name).await.unwrap().unwrap();
    let small = super::compact::small_files(&table).await.unwrap();
    assert_eq!(small.len(), 4);
    let mut rewrite = engine.begin_replace(&name, &table, small).await.unwrap();
    rewrite.write(&batch(0, 40, true)).await.unwrap();

    put(&engine, &name, WriteMode::Overwrite, &batch(1000, 5, true)).await;
    assert!(engine.commit(rewrite).await.is_err());
    assert_eq!(ids(&engine, &name).await, (1000..1005).collect::<Vec<_>>());
    // The four appends and the overwrite; the rewrite's file is gone.
    let data_files = walk(dir.path())
        .into_iter()
        .filter(|p| p.ends_with(".parquet"))
        .count();
    assert_eq!(data_files, 5);
}

/// The current snapshot's files, through the plan cache.
async fn current_files(engine: &IcebergEngine, name: &TableName) -> Arc<super::SnapshotFiles> {
    let table = engine.load(name).await.unwrap().unwrap();
    let snapshot = table.metadata().current_snapshot().unwrap().clone();
    engine
        .snapshot_files(name, &table, &snapshot)
        .await
        .unwrap()
}

#[tokio::test]
async fn snapshot_files_follow_commits_and_know_when_parquet_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(&dir).await;
    let name = appended(&engine, 2).await;
    let files = current_files(&engine, &name).await;
    assert_eq!((files.paths.len(), files.rows), (2, 20));
    assert!(files.plain_parquet && !files.deletes);
    // Served from the cache: the same files, not read again.
    assert!(Arc::ptr_eq(&files, &current_files(&engine, &name).await));
    // A commit moves the table on: the next load sees it.
    put(&engine, &name, WriteMode::Append, &batch(100, 5, true)).await;
    let files = current_files(&engine, &name).await;
    assert_eq!((files.paths.len(), files.rows), (3, 25));
    // An overwrite with another schema: its own files only, and exact again.
    put(&engine, &name, WriteMode::Overwrite, &batch(0, 4, false)).await;
    let files = current_files(&engine, &name).await;
    assert_eq!((files.paths.len(), files.rows), (1, 4));
    assert!(files.plain_parquet);
}

#[tokio::test]
async fn filters_leave_out_the_files_their_bounds_rule_out() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(&dir).await;
    // Three files: ids 0..10, 10..20, 20..30; notes n0..n9 in each.
    let name = appended(&engine, 3).await;
    let files = current_files(&engine, &name).await;
    let table = engine.load(&name).await.unwrap().unwrap();
    let schema = table.metadata().current_schema().clone();
    let kept = |filter: &str| {
        let filter = floe_wire::expr::parse_filter(filter).unwrap();
        files.matching(&super::conditions(&filter, &schema)).len()
    };
    assert_eq!(kept("id >= 12 AND id < 18"), 1);
    assert_eq!(kept("id = 25"), 1);
    assert_eq!(kept("(5 > id)"), 1);
    assert_eq!(kept("ID >= 20 AND note = 'n5'"), 1);
    assert_eq!(kept("id BETWEEN 5 AND 15"), 2);
    assert_eq!(kept("id <= 10"), 2);
    assert_eq!(kept("id > -1"), 3);
    // What bounds cannot decide keeps every file.
    assert_eq!(kept("id < 5 OR id > 25"), 3);
    assert_eq!(kept("id < 10.5"), 3);
    assert_eq!(kept("NOT id < 20"), 3);
    assert_eq!(kept("id + 0 < 5"), 3);
    assert_eq!(kept("id NOT BETWEEN 0 AND 25"), 3);
    // Nothing can match: one file is still read, so the result keeps its schema.
    assert_eq!(kept("id > 100"), 1);
    assert_eq!(kept("note = 'zz'"), 1);
}

#[tokio::test]
async fn a_snapshot_splits_into_groups_that_hold_each_file_once() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(&dir).await;
    let name = appended(&engine, 5).await;
    let files = current_files(&engine, &name).await;
    let all = files.matching(&[]);
    assert_eq!(all.len(), 5);
    for of in 1..=6 {
        let groups: Vec<Vec<usize>> = (0..of).map(|i| files.group(&all, i, of)).collect();
        let mut dealt: Vec<usize> = groups.concat();
        dealt.sort_unstable();
        assert_eq!(dealt, all, "{of} groups");
        // The same call gives the same groups (any host computes them alike).
        assert_eq!(groups[0], files.group(&all, 0, of));
        let sizes: Vec<u64> = groups.iter().map(|g| files.bytes_of(g)).collect();
        let (max, min) = (sizes.iter().max().unwrap(), sizes.iter().min().unwrap());
        if of <= 5 {
            assert!(
                *min > 0,
                "no empty group when there are files for all: {sizes:?}"
            );
            assert!(max - min <= *files.sizes.iter().max().unwrap(), "{sizes:?}");
        }
    }
}
