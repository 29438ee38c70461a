// Switchyard's firewall renderers, pure functions from the state to script text, one module
// each: the nftables ruleset and its structure (render-nft.ts), the published ports as set and
// map elements with their incremental updates (render-published.ts), the resolver's guard
// (render-resolver.ts), the multi-host rules (render-overlay.ts) and the iptables chain
// (render-iptables.ts); the names they share are in render-names.ts. Importers use this module.

export { IPTABLES_CHAIN, renderIptables } from "./render-iptables.ts";
export { FORWARD_MARK, NFT_TABLE } from "./render-names.ts";
export {
  type NftCapabilities,
  type NftRenderOptions,
  renderNftables,
  renderNftStructure,
} from "./render-nft.ts";
export {
  type PublishedElements,
  publishedElements,
  renderPublishedUpdate,
} from "./render-published.ts";
