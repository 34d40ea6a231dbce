"""The response models: lenient (extras kept, only ✓ fields required), camelCase on the wire."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from pipeline.wire import Asset, Collection, Cost, Job, Model, TrainingImage

JOB: dict[str, Any] = {
    "jobId": "job_1",
    "jobType": "custom",
    "status": "in-progress",
    "progress": 0.5,
    "statusHistory": [],
    "metadata": {},
    "createdAt": "2026-01-01T00:00:00.000Z",
    "updatedAt": "2026-01-01T00:00:00.000Z",
}


def test_a_job_keeps_unknown_fields_and_defaults_the_optional_ones() -> None:
    job = Job.model_validate({**JOB, "newField": {"x": 1}})
    assert job.job_id == "job_1" and not job.is_terminal
    assert job.metadata.asset_ids == [] and job.metadata.error is None and job.billing is None
    assert job.model_extra == {"newField": {"x": 1}}


@pytest.mark.parametrize("status", ["success", "failure", "canceled"])
def test_terminal_statuses(status: str) -> None:
    assert Job.model_validate({**JOB, "status": status}).is_terminal


@pytest.mark.parametrize("field", list(JOB))
def test_every_required_job_field_is_required(field: str) -> None:
    with pytest.raises(ValidationError):
        Job.model_validate({k: v for k, v in JOB.items() if k != field})


def test_a_job_has_no_id_key() -> None:
    with pytest.raises(ValidationError):
        Job.model_validate({**{k: v for k, v in JOB.items() if k != "jobId"}, "id": "job_1"})


def test_job_metadata_and_billing() -> None:
    job = Job.model_validate(
        {
            **JOB,
            "metadata": {"assetIds": ["asset_1"], "error": "nsfw", "hint": "rephrase"},
            "billing": {"cuCost": 4, "cuDiscount": 0, "cuCostDetails": {"quality-gate": 1}},
        }
    )
    assert job.metadata.asset_ids == ["asset_1"] and job.metadata.hint == "rephrase"
    assert job.billing is not None and job.billing.cu_cost_details == {"quality-gate": 1}


@pytest.mark.parametrize(("seed", "expected"), [("42", "42"), (42, 42)])
def test_an_asset_seed_may_be_a_string_or_a_number(seed: object, expected: object) -> None:
    asset = Asset.model_validate(
        {
            "id": "asset_1",
            "url": "https://cdn/a.png",
            "mimeType": "image/png",
            "kind": "image",
            "status": "success",
            "source": "txt2img",
            "privacy": "private",
            "metadata": {"kind": "image", "type": "txt2img", "seed": seed},
            "properties": {"size": 3},
            "authorId": "a",
            "ownerId": "o",
            "collectionIds": [],
            "tags": [],
            "editCapabilities": [],
            "createdAt": "t",
            "updatedAt": "t",
            "thumbnail": {"assetId": "asset_2", "url": "u"},
        }
    )
    assert asset.metadata.seed == expected
    assert asset.thumbnail is not None and asset.thumbnail.asset_id == "asset_2"


def test_cost_reads_the_envelope_and_drops_its_other_keys() -> None:
    cost = Cost.model_validate(
        {
            "job": JOB,
            "creativeUnitsCost": 3,
            "costDetails": {"custom-generation": 3},
            "ipDetection": {"action": "flagged", "findings": [{"category": "logo"}]},
        }
    )
    assert cost.creative_units_cost == 3 and cost.cost_details == {"custom-generation": 3}
    assert cost.ip_detection is not None and cost.ip_detection.findings[0].category == "logo"
    assert not cost.model_extra and "job" not in cost.model_dump()
    assert Cost.model_validate({}).creative_units_cost is None


def test_model_training_progress_and_optional_schema() -> None:
    model = Model.model_validate(
        {
            "id": "model_1",
            "status": "training",
            "type": "flux.1-lora",
            "custom": False,
            "capabilities": [],
            "privacy": "private",
            "source": "scenario",
            "collectionIds": [],
            "tags": [],
            "exampleAssetIds": [],
            "trainingImagesNumber": 12,
            "createdAt": "t",
            "updatedAt": "t",
            "trainingProgress": {"stage": "running-train", "updatedAt": 1767225600000},
        }
    )
    assert model.inputs is None and model.ui_config is None
    assert model.training_progress is not None and model.training_progress.stage == "running-train"


def test_collection_and_training_image() -> None:
    collection = Collection.model_validate(
        {
            "id": "c",
            "name": "n",
            "ownerId": "o",
            "assetCount": 1,
            "modelCount": 0,
            "itemCount": 1,
            "createdAt": "t",
            "updatedAt": "t",
        }
    )
    assert collection.asset_count == 1
    assert TrainingImage.model_validate({}).id is None  # the contract marks nothing required


def test_a_jobs_run_time_comes_from_its_own_dates() -> None:
    history = [
        {"status": "queued", "date": "2026-01-01T00:00:00.000Z"},
        {"status": "success", "date": "2026-01-01T00:00:01.250Z"},
    ]
    done = Job.model_validate({**JOB, "status": "success", "statusHistory": history})
    assert done.run_seconds == pytest.approx(1.25)
    # no history entry for the final status: updatedAt stands in
    late = {**JOB, "status": "failure", "updatedAt": "2026-01-01T00:00:03.000Z"}
    assert Job.model_validate(late).run_seconds == pytest.approx(3.0)
    assert Job.model_validate(JOB).run_seconds is None  # not over yet
    garbled = {**JOB, "status": "success", "createdAt": "yesterday"}
    assert Job.model_validate(garbled).run_seconds is None
    backwards = {**JOB, "status": "success", "updatedAt": "2025-12-31T00:00:00Z"}
    assert Job.model_validate(backwards).run_seconds is None
