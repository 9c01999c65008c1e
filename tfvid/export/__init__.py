"""tfvid.export: SavedModel exports in the TF Serving layout (savedmodel; the in-graph
protocol signatures serving_default / encoded_frames / sequence_example / clip: signatures)
and TFLite (tflite).

    from tfvid.export import export_saved_model, load_export
"""
from tfvid.export.savedmodel import (  # noqa: F401
    CLIP_SIGNATURE,
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
