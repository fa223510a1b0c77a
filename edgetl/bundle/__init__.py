"""`export_run`: a trained run -> a verified deploy bundle (FP32, INT8 per target, QAT, FP16, manifest), written as
one transaction. Orchestrates export, quantize and the runtime's manifest; nothing below imports it."""
