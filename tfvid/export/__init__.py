"""tfvid.export: SavedModel exports in the TF Serving layout (savedmodel; the in-graph
protocol signatures serving_default / encoded_frames / sequence_example / clip: signatures,
serving_protocol; the sidecar: sidecar, run_sidecar; warmup requests: warmup; names and
versions: layout; loading: loaded), exports of training runs (from_run, four_stream) and
TFLite (tflite: tflite_convert, tflite_uint8, tflite_runtime, tflite_check, tflite_report).

    from tfvid.export import export_saved_model, load_export
    from tfvid.export.from_run import export_run
"""
from tfvid.export.savedmodel import (  # noqa: F401
    CLIP_SIGNATURE,
    FEATURES_SIGNATURE,
    INPUT_NAME,
    OUTPUT_NAMES,
    SIGNATURE_NAME,
    LoadedExport,
    clip_signature,
    SidecarError,
    export_saved_model,
    load_export,
    next_version,
    read_sidecar,
    read_warmup_requests,
    resolve_export_dir,
    sidecar_file,
    validate_sidecar,
)
from tfvid.export.signatures import (  # noqa: F401
    ENCODED_SIGNATURE,
    FRAMES_SIGNATURE,
    RECORD_SIGNATURE,
    Protocol,
    InputProtocol,
)
from tfvid.export.tflite import TFLiteConversionError, check_parity, convert_to_tflite  # noqa: F401
