"""Reviews' command and its handler. Posting a review: load the review's stream and the
product's, decide, append both checks (the product exists; one review per customer and
product) in one go."""

from __future__ import annotations

from dataclasses import dataclass

from application.commands import Command, handles
from application.decision import CommandResult, Loaded
from application.handler import CommandHandler
from domain import product, review, values
from domain.aggregate import DomainEvent
from domain.errors import NotFound
from domain.values import Actor


@dataclass(frozen=True)
class PostReview(Command[review.Review]):
    actor: Actor
    sku: str
    rating: int
    comment: str = ""


@handles(PostReview)
async def post_review(handler: CommandHandler, command: PostReview) -> CommandResult[review.Review]:
    actor, sku, rating, comment = command.actor, command.sku, command.rating, command.comment
    values.sku(sku)
    stream = review.stream_id(review.review_id(sku, actor.id))
    product_stream = product.stream_id(sku)

    def decide(loaded: Loaded) -> dict[str, list[DomainEvent]]:
        if loaded.state(product_stream) is None:
            raise NotFound(f"no product with sku {sku!r}")
        command = review.PostReview(sku, rating, comment, actor, handler.clock())
        return {stream: list(review.decide(command, loaded.state(stream)))}

    executed = await handler.execute(actor, "PostReview", [stream, product_stream], decide)
    return await handler.with_state(executed, stream)
