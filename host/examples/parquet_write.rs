//! The practical limit for ingest: arrow-rs writing the same batches to Parquet
//! in-process with floe's Parquet settings, on one thread or (like floe's lanes)
//! round robin into one file per thread. Benchmarks only.
//!
//!     cargo run --release --example parquet_write -- BATCHES.arrow OUT_PREFIX [THREADS]
//!
//! Reads an Arrow IPC file into memory first, then times the write alone and
//! prints `{"rows": N, "seconds": S}`.

use std::fs::File;
use std::time::Instant;

use arrow::ipc::reader::FileReader;
use parquet::arrow::ArrowWriter;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (input, output, threads) = match args.as_slice() {
        [_, input, output] => (input, output, 1),
        [_, input, output, threads] => (input, output, threads.parse()?),
        _ => anyhow::bail!("usage: parquet_write BATCHES.arrow OUT_PREFIX [THREADS]"),
    };
    let reader = FileReader::try_new(File::open(input)?, None)?;
    let schema = reader.schema();
    let batches = reader.collect::<Result<Vec<_>, _>>()?;
    let started = Instant::now();
    let rows = std::thread::scope(|scope| {
        let writers: Vec<_> = (0..threads)
            .map(|t| {
                let (schema, batches) = (schema.clone(), &batches);
                scope.spawn(move || -> anyhow::Result<usize> {
                    let file = File::create(format!("{output}-{t}.parquet"))?;
                    let properties = floe::engines::iceberg::parquet_properties();
                    let mut writer = ArrowWriter::try_new(file, schema, Some(properties))?;
                    let mut rows = 0;
                    for batch in batches.iter().skip(t).step_by(threads) {
                        writer.write(batch)?;
                        rows += batch.num_rows();
                    }
                    writer.close()?;
                    Ok(rows)
                })
            })
            .collect();
        writers
            .into_iter()
            .map(|w| w.join().expect("writer thread panicked"))
            .sum::<anyhow::Result<usize>>()
    })?;
    println!(
        "{{\"rows\": {rows}, \"seconds\": {}}}",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
