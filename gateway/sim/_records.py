"""The simulated tables: their columns with types, and realistic rows of about 1 KB of JSON each."""

from __future__ import annotations

import enum
import random
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Row = dict[str, Any]  # a row of a simulated table: column (or annotation) name to value


class Kind(enum.Enum):
    """A column's type, named as the OData type `$filter` compares it as."""

    STRING = "Edm.String"
    INT = "Edm.Int32"
    DECIMAL = "Edm.Decimal"
    BOOL = "Edm.Boolean"
    DATETIME = "Edm.DateTimeOffset"
    GUID = "Edm.Guid"


@dataclass(frozen=True, slots=True)
class TableSpec:
    entity_set: str
    primary_key: str
    entity_type: str  # the table's logical name, as in `Microsoft.Dynamics.CRM.account`
    columns: Mapping[str, Kind]  # every column, the system ones included
    make: Callable[[random.Random], Row]  # the business columns of a new row

    def type_name(self) -> str:
        return f"Microsoft.Dynamics.CRM.{self.entity_type}"


# fmt: off
_FIRST = ("Nancy", "Maria", "Yvonne", "Susanna", "Paul", "Rene", "Jim", "Scott", "Sanjay", "Wei", "Aiko",
          "Lars", "Fatima", "Diego", "Olga", "Kwame")
_LAST = ("Anderson", "Campbell", "McKay", "Stubberod", "Valdes", "Brown", "Shah", "Chen", "Tanaka", "Berg",
         "Haddad", "Ruiz", "Ivanova", "Mensah")
_COMPANY = ("Contoso", "Fabrikam", "Adventure Works", "Litware", "Northwind Traders", "Alpine Ski House",
            "Coho Winery", "Fourth Coffee", "Tailspin Toys", "Wide World Importers", "Proseware",
            "Lucerne Publishing", "Blue Yonder Airlines", "Woodgrove Bank")
_SUFFIX = ("Inc.", "Ltd", "GmbH", "S.A.", "LLC", "Group", "Holdings", "Partners")
_CITIES = (("Redmond", "WA", "98052", "United States"), ("Seattle", "WA", "98101", "United States"),
           ("Toronto", "ON", "M5H 2N2", "Canada"), ("London", "", "EC1A 1BB", "United Kingdom"),
           ("Berlin", "BE", "10115", "Germany"), ("Paris", "IDF", "75001", "France"),
           ("Sydney", "NSW", "2000", "Australia"), ("Tokyo", "13", "100-0001", "Japan"))
_STREETS = ("Main St", "Market St", "Oak Ave", "High Street", "Station Rd", "Queen St", "King St", "Elm Way")
_TITLES = ("Purchasing Manager", "CFO", "IT Director", "Sales Lead", "Operations Manager", "Buyer", "CEO")
_SUBJECTS = ("Follow up on proposal", "Schedule product demo", "Send pricing sheet",
             "Quarterly business review", "Renewal discussion", "Onboarding call", "Collect requirements",
             "Contract signature")
# fmt: on
_STEPS = ("1-Qualify", "2-Develop", "3-Propose", "4-Close")
_ACTIVITY_TYPES = ("task", "phonecall", "email", "appointment")
_SENTENCES = (
    "Customer is evaluating options for the next fiscal year and asked for a detailed comparison.",
    "Key stakeholders include the operations team and the regional finance office.",
    "Previous engagement went well; the account expressed interest in expanding the contract.",
    "Budget approval is expected after the board meeting at the end of the quarter.",
    "Requested references from similar customers in the same industry and region.",
    "Integration with the existing ERP system is a hard requirement for the rollout.",
    "Decision maker prefers short weekly status calls and written summaries.",
    "Competitor pricing was mentioned; a discount may be needed to win the renewal.",
)
# System users that own and edit rows, the same in every run.
_OWNERS = tuple(str(uuid.uuid5(uuid.NAMESPACE_URL, f"https://sim.invalid/systemuser/{i}")) for i in range(12))


def new_guid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _person(rng: random.Random) -> tuple[str, str, str]:
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    return first, last, f"{first.lower()}.{last.lower()}@{rng.choice(_COMPANY).split()[0].lower()}.example"


def _phone(rng: random.Random) -> str:
    return f"+1-555-{rng.randrange(100, 1000)}-{rng.randrange(1000, 10000)}"


def _text(rng: random.Random, sentences: int) -> str:
    return " ".join(rng.sample(_SENTENCES, sentences))


def _system(rng: random.Random) -> Row:
    owner = rng.choice(_OWNERS)
    return {
        "statecode": 0,
        "statuscode": 1,
        "_ownerid_value": owner,
        "_createdby_value": owner,
        "_modifiedby_value": rng.choice(_OWNERS),
        "importsequencenumber": None,
        "timezoneruleversionnumber": 4,
    }


def _address(rng: random.Random) -> Row:
    city, state, postcode, country = rng.choice(_CITIES)
    return {
        "address1_line1": f"{rng.randrange(1, 9999)} {rng.choice(_STREETS)}",
        "address1_city": city,
        "address1_stateorprovince": state,
        "address1_postalcode": postcode,
        "address1_country": country,
    }


def _account(rng: random.Random) -> Row:
    name = f"{rng.choice(_COMPANY)} {rng.choice(_SUFFIX)}"
    domain = name.split()[0].lower()
    return {
        "name": name,
        "accountnumber": f"AC-{rng.randrange(100000, 999999)}",
        "emailaddress1": f"info@{domain}.example",
        "telephone1": _phone(rng),
        "fax": _phone(rng),
        "websiteurl": f"https://www.{domain}.example",
        **_address(rng),
        "revenue": float(rng.randrange(10_000, 50_000_000)),
        "numberofemployees": rng.randrange(1, 20_000),
        "industrycode": rng.randrange(1, 34),
        "donotemail": rng.random() < 0.1,
        "_primarycontactid_value": new_guid(rng),
        "description": _text(rng, 4),
        **_system(rng),
    }


def _contact(rng: random.Random) -> Row:
    first, last, email = _person(rng)
    return {
        "firstname": first,
        "lastname": last,
        "fullname": f"{first} {last}",
        "emailaddress1": email,
        "telephone1": _phone(rng),
        "mobilephone": _phone(rng),
        "jobtitle": rng.choice(_TITLES),
        **_address(rng),
        "donotemail": rng.random() < 0.1,
        "_parentcustomerid_value": new_guid(rng),
        "description": _text(rng, 4),
        **_system(rng),
    }


def _lead(rng: random.Random) -> Row:
    first, last, email = _person(rng)
    return {
        "subject": f"Interested in {rng.choice(('licences', 'support plan', 'hardware', 'consulting'))}",
        "firstname": first,
        "lastname": last,
        "fullname": f"{first} {last}",
        "companyname": f"{rng.choice(_COMPANY)} {rng.choice(_SUFFIX)}",
        "emailaddress1": email,
        "telephone1": _phone(rng),
        **_address(rng),
        "estimatedvalue": float(rng.randrange(1_000, 500_000)),
        "leadqualitycode": rng.randrange(1, 4),
        "description": _text(rng, 4),
        **_system(rng),
    }


def _opportunity(rng: random.Random) -> Row:
    estimated = float(rng.randrange(5_000, 2_000_000))
    return {
        "name": f"{rng.randrange(5, 500)} licences for {rng.choice(_COMPANY)}",
        "estimatedvalue": estimated,
        "actualvalue": None,
        "closeprobability": rng.randrange(0, 101, 5),
        "estimatedclosedate": f"2026-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}T00:00:00Z",
        "stepname": rng.choice(_STEPS),
        "_parentaccountid_value": new_guid(rng),
        "_customerid_value": new_guid(rng),
        "description": _text(rng, 5),
        **_system(rng),
    }


def _activity(rng: random.Random, activity_type: str) -> Row:
    day, hour = rng.randrange(1, 29), rng.randrange(8, 17)
    return {
        "subject": rng.choice(_SUBJECTS),
        "activitytypecode": activity_type,
        "scheduledstart": f"2026-02-{day:02d}T{hour:02d}:00:00Z",
        "scheduledend": f"2026-02-{day:02d}T{hour + 1:02d}:00:00Z",
        "prioritycode": rng.randrange(0, 3),
        "percentcomplete": rng.randrange(0, 101, 25),
        "_regardingobjectid_value": new_guid(rng),
        "description": _text(rng, 5),
        **_system(rng),
    }


def _task(rng: random.Random) -> Row:
    return _activity(rng, "task")


def _activitypointer(rng: random.Random) -> Row:
    return _activity(rng, rng.choice(_ACTIVITY_TYPES))


def _annotation(rng: random.Random) -> Row:
    return {
        "subject": f"Note: {rng.choice(_SUBJECTS).lower()}",
        "notetext": _text(rng, 6),
        "isdocument": False,
        "filename": None,
        "mimetype": None,
        "objecttypecode": rng.choice(("account", "contact", "opportunity")),
        "_objectid_value": new_guid(rng),
        **_system(rng),
    }


def _columns(
    *, s: str = "", i: str = "", d: str = "", b: str = "", t: str = "", g: str = ""
) -> dict[str, Kind]:
    """Columns by kind, space-separated: strings, ints, decimals, booleans, datetimes, guids."""
    kinds = (
        (s, Kind.STRING),
        (i, Kind.INT),
        (d, Kind.DECIMAL),
        (b, Kind.BOOL),
        (t, Kind.DATETIME),
        (g, Kind.GUID),
    )
    return {name: kind for names, kind in kinds for name in names.split()}


_SYSTEM = _columns(
    i="versionnumber statecode statuscode importsequencenumber timezoneruleversionnumber",
    t="createdon modifiedon",
    g="_ownerid_value _createdby_value _modifiedby_value",
)
_ADDRESS = "address1_line1 address1_city address1_stateorprovince address1_postalcode address1_country"
_PERSON = "firstname lastname fullname emailaddress1 telephone1 description"
_ACTIVITY = _columns(
    s="subject activitytypecode description",
    i="prioritycode percentcomplete",
    t="scheduledstart scheduledend",
    g="_regardingobjectid_value",
)


def _spec(
    entity_set: str,
    key: str,
    entity_type: str,
    make: Callable[[random.Random], Row],
    columns: Mapping[str, Kind],
) -> TableSpec:
    return TableSpec(entity_set, key, entity_type, {key: Kind.GUID, **columns, **_SYSTEM}, make)


TABLES: Mapping[str, TableSpec] = {
    spec.entity_set: spec
    for spec in (
        _spec(
            "accounts",
            "accountid",
            "account",
            _account,
            _columns(
                s=f"name accountnumber emailaddress1 telephone1 fax websiteurl description {_ADDRESS}",
                i="numberofemployees industrycode",
                d="revenue",
                b="donotemail",
                g="_primarycontactid_value",
            ),
        ),
        _spec(
            "contacts",
            "contactid",
            "contact",
            _contact,
            _columns(
                s=f"{_PERSON} mobilephone jobtitle {_ADDRESS}",
                b="donotemail",
                g="_parentcustomerid_value",
            ),
        ),
        _spec(
            "leads",
            "leadid",
            "lead",
            _lead,
            _columns(
                s=f"{_PERSON} subject companyname {_ADDRESS}",
                i="leadqualitycode",
                d="estimatedvalue",
            ),
        ),
        _spec(
            "opportunities",
            "opportunityid",
            "opportunity",
            _opportunity,
            _columns(
                s="name stepname description",
                i="closeprobability",
                d="estimatedvalue actualvalue",
                t="estimatedclosedate",
                g="_parentaccountid_value _customerid_value",
            ),
        ),
        _spec("tasks", "activityid", "task", _task, _ACTIVITY),
        _spec(
            "annotations",
            "annotationid",
            "annotation",
            _annotation,
            _columns(
                s="subject notetext filename mimetype objecttypecode", b="isdocument", g="_objectid_value"
            ),
        ),
        _spec("activitypointers", "activityid", "activitypointer", _activitypointer, _ACTIVITY),
    )
}
ENTITY_SETS: tuple[str, ...] = tuple(TABLES)
