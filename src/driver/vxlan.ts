/** Name of a multi-host network's VXLAN device (fits IFNAMSIZ: the id has at most 8 digits). */
export const vxlanDeviceName = (vni: number): string => `syvx${vni}`;

/** True for a name {@link vxlanDeviceName} makes. */
export const isVxlanDeviceName = (name: string): boolean => /^syvx[0-9]+$/.test(name);
