"""The policy cfv-commands, and the check that the command queues follow one that dead-letters into cfv's
exchange (pure: no broker)."""

from __future__ import annotations

import re
from typing import Any

from cfv.broker import topology
from cfv.broker.policies import management_urls, virtual_host
from cfv.settings import Settings


def _ours(**changes: Any) -> dict[str, Any]:
    return {"name": topology.POLICY, **topology.commands_policy(1000), **changes}


def test_the_policy_matches_every_command_queue_and_nothing_else() -> None:
    policy = [_ours()]
    assert topology.policy_problem(policy, 64) is None
    assert topology.policy_problem([_ours(pattern=r"^cfv\.commands\.[0-9]+$")], 2) is None
    for other in ("cfv.commands", "cfv.commands.dead", "cfv.commands.dead.settle", "cfv.commands.dlx"):
        assert not re.search(topology.POLICY_PATTERN, other), other


def test_without_a_policy_the_queues_would_drop_what_they_dead_letter() -> None:
    assert topology.policy_problem([], 1) == "no policy applies to cfv.commands.0"
    exchanges_only = [_ours(**{"apply-to": "exchanges"})]
    assert topology.policy_problem(exchanges_only, 1) == "no policy applies to cfv.commands.0"


def test_a_policy_of_higher_priority_shadows_ours() -> None:
    catch_all = {"name": "ha", "pattern": ".*", "apply-to": "all", "priority": 50,
                 "definition": {"max-length": 10}}
    problem = topology.policy_problem([_ours(), catch_all], 1)
    assert problem == ("cfv.commands.0 follows the policy 'ha', whose dead-letter-exchange is None, not "
                       "'cfv.commands.dlx'")
    catch_all["priority"] = 1
    assert topology.policy_problem([_ours(), catch_all], 1) is None


def test_an_operators_own_policy_does_if_it_dead_letters_into_cfvs_exchange() -> None:
    theirs = {"name": "commands", "pattern": "^cfv\\.commands\\.", "apply-to": "quorum_queues", "priority": 0,
              "definition": {"dead-letter-exchange": "cfv.commands.dlx", "delivery-limit": 50}}
    assert topology.policy_problem([theirs], 4) is None
    theirs["definition"] = {"dead-letter-exchange": "elsewhere"}
    assert "whose dead-letter-exchange is 'elsewhere'" in str(topology.policy_problem([theirs], 4))


def test_the_definitions_file_carries_the_policy_and_queues_only_what_a_policy_cannot_set() -> None:
    document = topology.definitions(shards=2, delivery_limit=7, vhost="v")
    assert document["policies"] == [{"name": "cfv-commands", "vhost": "v", "pattern": topology.POLICY_PATTERN,
                                     "apply-to": "queues", "priority": topology.POLICY_PRIORITY,
                                     "definition": {"dead-letter-exchange": "cfv.commands.dlx",
                                                    "delivery-limit": 7}}]
    shards = [q for q in document["queues"] if q["name"].startswith("cfv.commands.") and "dead" not in q["name"]]
    assert [q["arguments"] for q in shards] == [{"x-queue-type": "quorum", "x-single-active-consumer": True}] * 2


def test_the_management_api_is_found_from_the_amqp_url() -> None:
    settings = Settings(amqp_url="amqp://cfv:s%40cret@rabbit-0:5672/tenant%2Fa,amqp://cfv:x@rabbit-1:5682/")
    first, second = management_urls(settings)
    assert (first.scheme, first.host, first.port, first.user, first.password) == ("http", "rabbit-0", 15672, "cfv",
                                                                                  "s@cret")
    assert (second.host, second.port, second.password) == ("rabbit-1", 15682, "x")
    assert virtual_host(settings) == "tenant/a"
    assert virtual_host(Settings(amqp_url="amqp://guest:guest@localhost:5672/")) == "/"
    assert virtual_host(Settings(amqp_url="amqp://guest:guest@localhost:5672")) == "/"
    [secure] = management_urls(Settings(amqp_url="amqps://u:p@broker/"))
    assert (secure.scheme, secure.port) == ("https", 15671)
    [given] = management_urls(Settings(rabbitmq_management_url="https://admin:pw@mgmt.example:443/rabbit/"))
    assert (given.host, given.port, given.user, given.path) == ("mgmt.example", 443, "admin", "/rabbit/")


def test_a_tie_of_priorities_must_dead_letter_into_cfvs_exchange_whichever_applies() -> None:
    tied = {"name": "ops", "pattern": "^cfv\\.", "apply-to": "queues", "priority": topology.POLICY_PRIORITY,
            "definition": {"dead-letter-exchange": "elsewhere"}}
    assert topology.policy_problem([_ours(), tied], 1) == ("cfv.commands.0 follows the policy 'ops', whose "
                                                           "dead-letter-exchange is 'elsewhere', not "
                                                           "'cfv.commands.dlx'")
    tied["definition"] = {"dead-letter-exchange": "cfv.commands.dlx"}
    assert topology.policy_problem([_ours(), tied], 1) is None
    assert topology.without_delivery_limit([_ours(), tied], 1) == "ops"  # said as a warning
    assert topology.without_delivery_limit([_ours()], 4) is None
