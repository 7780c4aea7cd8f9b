"""A feed on a schema that is not the sample catalog: what a developer writes for their own app.

Loaded through the TOML setting `feed_modules = ["tests.library_feeds"]`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from sqlalchemy import Column, ForeignKey, Integer, MetaData, String, Table, select
from sqlalchemy.engine import Connection

from feeds.definitions import Document, Feed, Keys, Watch

metadata = MetaData()
authors = Table(
    "authors", metadata, Column("id", Integer, primary_key=True), Column("name", String(100))
)
books = Table(
    "books",
    metadata,
    Column("book_no", Integer, primary_key=True),
    Column("title", String(200), nullable=False),
    Column("author_id", Integer, ForeignKey("authors.id")),
)
book_tags = Table("book_tags", metadata, Column("book_no", Integer), Column("tag", String(50)))


def build_books(conn: Connection, keys: Keys) -> Iterator[Document]:
    tags: dict[int, list[str]] = defaultdict(list)
    for book_no, tag in conn.execute(
        select(book_tags.c.book_no, book_tags.c.tag).where(keys.match(book_tags.c.book_no))
    ):
        tags[book_no].append(tag)
    query = (
        select(books.c.book_no, books.c.title, authors.c.name)
        .select_from(books.outerjoin(authors, authors.c.id == books.c.author_id))
        .where(keys.match(books.c.book_no))
    )
    for book_no, title, author in conn.execute(query):
        if title.startswith(
            "\ufffd"
        ):  # a corrupt row the application wrote: this builder cannot export it
            raise ValueError(f"book {book_no} has an undecodable title")
        yield Document(
            entity=book_no,
            id=f"book-{book_no}",
            data={"title": title, "author": author, "tags": sorted(tags[book_no])},
        )


FEEDS = [
    Feed(
        name="books",
        indexer_id="library_books",
        title="Book Feed",
        key_table="books",
        key_column="book_no",
        build=build_books,
        watches=(
            Watch("books", "book_no"),
            Watch("book_tags", "book_no"),
            # An author's rename changes every book of theirs.
            Watch("authors", "SELECT book_no AS entity_id FROM books WHERE author_id = {row}.id"),
        ),
    )
]
