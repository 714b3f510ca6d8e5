/*-------------------------------------------------------------------------
 *
 * bis.h
 *	  Declarations shared by the files of the bis extension.
 *
 *-------------------------------------------------------------------------
 */
#ifndef BIS_H
#define BIS_H

/* settings, defined in bis.c */
extern int	bis_default_threshold;
extern bool bis_notify;

/* the NOTIFY channel mailers LISTEN on */
#define BIS_CHANNEL "bis_notifications"

/* trigger.c */
extern void bis_trigger_init(void);

#endif							/* BIS_H */
