"""What each sync error category (SPEC §6) means and how to resolve it: shown by the API and the
dashboard next to the errors of that category.
"""

from __future__ import annotations

from dataclasses import dataclass

from feeds.export.protocol import ErrorCategory


@dataclass(frozen=True)
class CategoryHelp:
    title: str
    resolution: str


HELP: dict[ErrorCategory, CategoryHelp] = {
    ErrorCategory.ASSOCIATIONS: CategoryHelp(
        "Associations",
        "The destination rejected these records because they refer to another record it does not "
        "have (code MISSING_ASSOCIATION), for example a product whose category or parent product "
        "was never synced or was deleted there. Make sure the referenced records exist: sync their "
        "feed first (e.g. saas:resync --feed categories) or fix the reference in the source data, "
        "then resync the selected errors.",
    ),
    ErrorCategory.CUSTOM_CODE: CategoryHelp(
        "Custom code",
        "A validation rule or custom code on the destination refused these records "
        "(code VALIDATION_RULE). The message shows the rule that failed. Either change the source "
        "data so that it satisfies the rule, or ask the destination's administrator to adjust the "
        "rule; then resync the selected errors.",
    ),
    ErrorCategory.DUPLICATES: CategoryHelp(
        "Duplicates",
        "The destination already holds another record with a value that must be unique "
        "(code DUPLICATE_VALUE), such as a SKU or an e-mail address. Remove or merge the duplicate "
        "in the source or in the destination, or make the value unique, then resync the selected "
        "errors.",
    ),
    ErrorCategory.PERMISSIONS: CategoryHelp(
        "Permissions",
        "The destination's account used by Feedsync may not create or change these records "
        "(code PERMISSION_DENIED). Grant the integration user the missing permission on that "
        "object or field in the destination (the token in EXPORT_TOKEN), then resync the selected "
        "errors.",
    ),
    ErrorCategory.PICKLISTS: CategoryHelp(
        "Picklists",
        "A value is not one of the options the destination accepts for a picklist or enumeration "
        "field (code INVALID_ENUM_VALUE). Add the option to the field in the destination, or map "
        "the source value to an existing option, then resync the selected errors.",
    ),
    ErrorCategory.PROPERTY_MAPPINGS: CategoryHelp(
        "Property mappings",
        "A field sent by Feedsync is unknown to the destination or has another type there "
        "(codes UNMAPPED_FIELD, TYPE_MISMATCH). Create or map the property in the destination with "
        "the type the feed sends, or change the feed definition, then resync the selected errors.",
    ),
    ErrorCategory.PROPERTY_VALUES: CategoryHelp(
        "Property values",
        "A field value has the right type but is not valid for the destination "
        "(code INVALID_VALUE): too long, out of range or badly formatted (dates, URLs, e-mail "
        "addresses). Correct the value in the source application; the item is sent again when it "
        "changes, or resync the selected errors after the fix.",
    ),
    ErrorCategory.OTHER: CategoryHelp(
        "Other",
        "The destination rejected these records with a code Feedsync does not classify, or the "
        "document could not be built on our side (code BUILD_FAILED, with the exception message). "
        "Read the message of each error; fix the data or the feed definition it points to, then "
        "resync the selected errors.",
    ),
    ErrorCategory.TRANSIENT: CategoryHelp(
        "Transient",
        "Sending failed for a reason that usually passes: a timeout, a connection error, a 5xx "
        "answer or a rate limit (429). Feedsync resends these items by itself with increasing "
        "delays (the <feed>_feed_resend_failed_items job) up to [retry] max_attempts. If they "
        "persist, check that the destination is reachable and healthy; resync the selected errors "
        "to try again at once.",
    ),
}


def help_for(category: str) -> CategoryHelp:
    """The title and resolution text of a category; unknown names get those of `other`."""
    try:
        return HELP[ErrorCategory(category)]
    except ValueError:
        return HELP[ErrorCategory.OTHER]
