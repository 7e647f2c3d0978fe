"""The run folder and what writes into it: the folder's owner, the recorder (CSV,
TensorBoard, progress), the Parquet traces, provenance, interruption handling and the
console log. Application layer, lowest tier: it knows no loop."""
