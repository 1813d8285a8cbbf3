"""What a run leaves behind, written after the graph by the run layer: the run record (run.json),
the visual report (report.html), and tracing that never carries image bytes."""
