"""Detection accuracy: PASCAL VOC mAP@0.5, person AP on MOTChallenge clips and COCO mAP
(pycocotools) on a COCO-format folder, with PR curves. `readers` reads the ground truth,
`metric` scores detections against it, `drivers` run a detector over a dataset, `coco` runs and
scores one on a COCO-format folder, `plots` draws the PR curves."""

from models.evaluate.coco import (
    CocoFolder,
    evaluate_coco,
    find_coco_folder,
    match_categories,
)
from models.evaluate.drivers import (
    DetectFn,
    Detection,
    detections_to_voc,
    evaluate_mot,
    evaluate_voc,
    save_result,
)
from models.evaluate.metric import (
    IOU_THRESHOLD,
    METRIC,
    PERSON_CLASS,
    VOC_CLASSES,
    ClassEval,
    ImageGT,
    evaluate_class,
    evaluate_detections,
    iou_voc,
    voc_ap,
)
from models.evaluate.plots import plot_pr_curves
from models.evaluate.readers import (
    VocAnnotation,
    VocObject,
    load_voc_ground_truth,
    parse_voc_xml,
    read_mot_gt,
    resolve_voc_root,
    voc_image_ids,
)

__all__: list[str] = [
    "IOU_THRESHOLD",
    "METRIC",
    "PERSON_CLASS",
    "VOC_CLASSES",
    "ClassEval",
    "CocoFolder",
    "DetectFn",
    "Detection",
    "ImageGT",
    "VocAnnotation",
    "VocObject",
    "detections_to_voc",
    "evaluate_class",
    "evaluate_coco",
    "evaluate_detections",
    "evaluate_mot",
    "evaluate_voc",
    "find_coco_folder",
    "iou_voc",
    "load_voc_ground_truth",
    "match_categories",
    "parse_voc_xml",
    "plot_pr_curves",
    "read_mot_gt",
    "resolve_voc_root",
    "save_result",
    "voc_ap",
    "voc_image_ids",
]
