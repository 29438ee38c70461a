import type { StateDocument } from "../state/model.ts";
import { FORWARD_MARK, hex, networksByBridge } from "./render-names.ts";

/** Switchyard's iptables chain, jumped to from Docker's DOCKER-USER chain. */
export const IPTABLES_CHAIN = "SWITCHYARD";

/**
 * Switchyard's iptables chain (an `iptables-restore --noflush` script). Docker's FORWARD
 * policy is DROP and an nftables accept cannot override another table's drop, so traffic of
 * Switchyard's bridges is accepted here, in front of Docker's chains; the filtering itself
 * (isolation, ICC, internal) happens in Switchyard's nftables table, where a drop is final.
 * Traffic leaving a Switchyard bridge is accepted only when the nftables forward chain marked
 * it (to a Switchyard bridge or a non-bridge interface): into any other bridge it returns to
 * Docker's chains, which decide as between two of Docker's own networks, whatever that
 * bridge's name.
 */
export function renderIptables(state: Readonly<StateDocument>): string {
  const all = networksByBridge(state);
  const lines = ["*filter", `:${IPTABLES_CHAIN} - [0:0]`, `-F ${IPTABLES_CHAIN}`];
  for (const network of all) lines.push(`-A ${IPTABLES_CHAIN} -o ${network.bridge} -j ACCEPT`);
  const mark = `${hex(FORWARD_MARK)}/${hex(FORWARD_MARK)}`;
  for (const network of all)
    lines.push(`-A ${IPTABLES_CHAIN} -i ${network.bridge} -m mark --mark ${mark} -j ACCEPT`);
  lines.push("COMMIT");
  return `${lines.join("\n")}\n`;
}
