//! The practical limit for ingest: arrow-rs writing the same batches to Parquet
//! in-process, with the codec floe uses (Snappy). Benchmarks only.
//!
//!     cargo run --release --example parquet_write -- BATCHES.arrow OUT.parquet
//!
//! Reads an Arrow IPC file into memory first, then times the write alone and
//! prints `{"rows": N, "seconds": S}`.

use std::fs::File;
use std::time::Instant;

use arrow::ipc::reader::FileReader;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, input, output] = args.as_slice() else {
        anyhow::bail!("usage: parquet_write BATCHES.arrow OUT.parquet");
    };
    let reader = FileReader::try_new(File::open(input)?, None)?;
    let schema = reader.schema();
    let batches = reader.collect::<Result<Vec<_>, _>>()?;
    let started = Instant::now();
    let properties = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut writer = ArrowWriter::try_new(File::create(output)?, schema, Some(properties))?;
    let mut rows = 0;
    for batch in &batches {
        writer.write(batch)?;
        rows += batch.num_rows();
    }
    writer.close()?;
    println!(
        "{{\"rows\": {rows}, \"seconds\": {}}}",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
